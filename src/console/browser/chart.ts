/** A uPlot line chart as a preact component: made once on mount, fed new data on every render. */
import { useEffect, useRef } from 'preact/hooks'
import { html, type View } from './html.js'
import uPlot from 'uplot'
import type { Series } from './poll.js'

const HEIGHT = 170

export interface ChartProps {
  id: string
  title: string
  /** Series labels and colours, in the order of data[1..]. */
  series: Array<{ label: string, color: string }>
  data: Series
  /** Decimals on the y axis and in the legend. */
  decimals: number
}

export function Chart ({ id, title, series, data, decimals }: ChartProps): View {
  const box = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  useEffect(() => {
    const el = box.current!
    const fmt = (_u: uPlot, v: number | null): string => v === null ? '–' : v.toFixed(decimals)
    const u = new uPlot({
      width: el.clientWidth,
      height: HEIGHT,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{ stroke: '#667', grid: { stroke: '#eef0f3' } }, { stroke: '#667', grid: { stroke: '#eef0f3' }, size: 48, values: (_u, vals) => vals.map(v => v.toFixed(decimals)) }],
      series: [{}, ...series.map(s => ({ label: s.label, stroke: s.color, width: 2, spanGaps: false, value: fmt }))]
    }, data as uPlot.AlignedData, el)
    plot.current = u
    const resize = new ResizeObserver(() => { u.setSize({ width: el.clientWidth, height: HEIGHT }) })
    resize.observe(el)
    return () => { resize.disconnect(); u.destroy(); plot.current = null }
  }, [])
  useEffect(() => { plot.current?.setData(data as uPlot.AlignedData) }, [data])
  return html`<figure class="chart" id=${id}><figcaption>${title}</figcaption><div ref=${box}></div></figure>`
}
