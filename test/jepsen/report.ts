/**
 * Report rendering, no dependencies: latency.svg (every completed operation, latency over time,
 * colored by outcome), throughput.svg (completions per second by outcome) and a self-contained
 * timeline.html (per-process lanes of operations, the same plots inline, results), each with the
 * nemesis's fault windows shaded. A query answered partially (coverage below total) is drawn in
 * its own color ('partial'); its hover text shows coverage and confidence. The timeline's table of
 * faults shows each window's detail and what its stop recorded (a namespace run's partitions and
 * loss: the packets their nftables rules dropped, per peer).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { faultWindows, pairs, type FaultWindow, type Op, type Pair } from './history.js'

const COLORS: Record<string, string> = { ok: '#2a9d3a', fail: '#d62828', info: '#e6a700' }
const PARTIAL_COLOR = '#3a86c8'

/** An ok query answer whose coverage is incomplete. */
function isPartial (p: Pair): boolean {
  const c = p.complete.coverage
  return p.type === 'ok' && c !== undefined && (c.answered !== c.total || c.missing.length > 0)
}

function color (p: Pair): string { return isPartial(p) ? PARTIAL_COLOR : COLORS[p.type]! }
const FAULT_COLORS: Record<string, string> = { partition: '#9ecae1', kill: '#fcae91', pause: '#c7b9e0', clock: '#fdd49e', outage: '#f4a3a8', disk: '#b8d8a8', loss: '#f2b5d4' }

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

interface Frame { w: number, h: number, left: number, right: number, top: number, bottom: number, tMax: number }

function x (f: Frame, t: number): number { return f.left + (t / f.tMax) * (f.w - f.left - f.right) }

function faultRects (f: Frame, windows: FaultWindow[]): string {
  return windows.map(w => `<rect x="${x(f, w.start).toFixed(1)}" y="${f.top}" width="${Math.max(1, x(f, w.end) - x(f, w.start)).toFixed(1)}" height="${f.h - f.top - f.bottom}" fill="${FAULT_COLORS[w.kind] ?? '#ddd'}" opacity="0.45"><title>${esc(w.kind)} ${(w.start / 1000).toFixed(1)}-${(w.end / 1000).toFixed(1)} s ${esc(JSON.stringify(w.detail))}</title></rect>`).join('')
}

function axes (f: Frame, yLabel: string, yTicks: Array<{ v: number, y: number, label: string }>): string {
  const xs: string[] = []
  const step = f.tMax > 120_000 ? 30_000 : f.tMax > 30_000 ? 10_000 : 5000
  for (let t = 0; t <= f.tMax; t += step) xs.push(`<line x1="${x(f, t)}" x2="${x(f, t)}" y1="${f.h - f.bottom}" y2="${f.h - f.bottom + 4}" stroke="#333"/><text x="${x(f, t)}" y="${f.h - f.bottom + 16}" font-size="10" text-anchor="middle">${t / 1000}s</text>`)
  const ys = yTicks.map(t => `<line x1="${f.left - 4}" x2="${f.w - f.right}" y1="${t.y}" y2="${t.y}" stroke="#eee"/><text x="${f.left - 6}" y="${t.y + 3}" font-size="10" text-anchor="end">${t.label}</text>`)
  return `${ys.join('')}<line x1="${f.left}" x2="${f.w - f.right}" y1="${f.h - f.bottom}" y2="${f.h - f.bottom}" stroke="#333"/><line x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.h - f.bottom}" stroke="#333"/>${xs.join('')}<text x="12" y="${f.top + (f.h - f.top - f.bottom) / 2}" font-size="11" transform="rotate(-90 12 ${f.top + (f.h - f.top - f.bottom) / 2})" text-anchor="middle">${esc(yLabel)}</text>`
}

function legend (f: Frame, windows: FaultWindow[], partial = false): string {
  const kinds = [...new Set(windows.map(w => w.kind))]
  const outcomes = Object.entries(COLORS).map(([k, c]) => ({ k, c, op: 1 }))
  if (partial) outcomes.splice(1, 0, { k: 'ok partial', c: PARTIAL_COLOR, op: 1 })
  const items = [...outcomes, ...kinds.map(k => ({ k, c: FAULT_COLORS[k] ?? '#ddd', op: 0.45 }))]
  return items.map((it, i) => `<rect x="${f.left + i * 90}" y="4" width="10" height="10" fill="${it.c}" opacity="${it.op}"/><text x="${f.left + i * 90 + 14}" y="13" font-size="11">${esc(it.k)}</text>`).join('')
}

function endTime (ops: readonly Op[]): number {
  return ops.reduce((m, o) => Number.isFinite(o.time) ? Math.max(m, o.time) : m, 1000)
}

/** The workers' operations: not the final reads and queries, not the queries workload's load. */
function clientPairs (ops: readonly Op[]): Pair[] {
  return pairs(ops).filter(p => p.complete.time !== Infinity && !String(p.invoke.process).startsWith('final') && p.invoke.process !== 'load')
}

export function latencySvg (ops: readonly Op[], width = 900, height = 320): string {
  const ps = clientPairs(ops)
  const windows = faultWindows(ops)
  const tMax = endTime(ops)
  const f: Frame = { w: width, h: height, left: 56, right: 10, top: 22, bottom: 26, tMax }
  const lats = ps.map(p => Math.max(0.1, p.complete.time - p.invoke.time))
  const maxLat = lats.reduce((m, v) => Math.max(m, v), 10)
  const lo = Math.log10(0.1)
  const hi = Math.log10(maxLat * 1.2)
  const y = (ms: number): number => f.h - f.bottom - ((Math.log10(Math.max(0.1, ms)) - lo) / (hi - lo)) * (f.h - f.top - f.bottom)
  const ticks = [1, 10, 100, 1000, 10_000].filter(v => v <= maxLat * 1.2).map(v => ({ v, y: y(v), label: v >= 1000 ? `${v / 1000}s` : `${v}ms` }))
  const dots = ps.map((p, i) => `<circle cx="${x(f, p.invoke.time).toFixed(1)}" cy="${y(lats[i]!).toFixed(1)}" r="1.6" fill="${color(p)}" opacity="0.7"/>`).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${faultRects(f, windows)}${axes(f, 'latency (log)', ticks)}${dots}${legend(f, windows, ps.some(isPartial))}</svg>`
}

export function throughputSvg (ops: readonly Op[], width = 900, height = 260, bucketMs = 1000): string {
  const ps = clientPairs(ops)
  const windows = faultWindows(ops)
  const tMax = endTime(ops)
  const f: Frame = { w: width, h: height, left: 56, right: 10, top: 22, bottom: 26, tMax }
  const n = Math.ceil(tMax / bucketMs) + 1
  const counts: Record<string, number[]> = { ok: new Array(n).fill(0), fail: new Array(n).fill(0), info: new Array(n).fill(0) }
  for (const p of ps) counts[p.type]![Math.floor(p.complete.time / bucketMs)]!++
  const maxC = Object.values(counts).flat().reduce((m, v) => Math.max(m, v), 1)
  const y = (c: number): number => f.h - f.bottom - (c / maxC) * (f.h - f.top - f.bottom)
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(q => Math.round(q * maxC)).map(v => ({ v, y: y(v), label: `${(v * 1000 / bucketMs).toFixed(0)}/s` }))
  const lines = Object.entries(counts).map(([k, cs]) => `<polyline fill="none" stroke="${COLORS[k]}" stroke-width="1.5" points="${cs.map((c, i) => `${x(f, i * bucketMs + bucketMs / 2).toFixed(1)},${y(c).toFixed(1)}`).join(' ')}"/>`).join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${faultRects(f, windows)}${axes(f, 'completions', ticks)}${lines}${legend(f, windows)}</svg>`
}

/** Per-process lanes: one bar per operation from invocation to completion, colored by outcome. */
export function timelineHtml (ops: readonly Op[], results: unknown): string {
  const ps = pairs(ops).filter(p => !String(p.invoke.process).startsWith('final'))
  const windows = faultWindows(ops)
  // Workers by number, then named processes ('load').
  const procs = [...new Set(ps.map(p => String(p.invoke.process)))].sort((a, b) => {
    const na = Number(a)
    const nb = Number(b)
    if (Number.isNaN(na) || Number.isNaN(nb)) return Number.isNaN(na) === Number.isNaN(nb) ? (a < b ? -1 : a > b ? 1 : 0) : Number.isNaN(na) ? 1 : -1
    return na - nb
  })
  const tMax = endTime(ops)
  const laneH = 18
  const width = 1200
  // The disk nemesis's /health samples of full peers: one lane per peer below the clients'.
  const health = ops.filter(o => o.process === 'nemesis' && o.f === 'disk-health').map(o => ({ time: o.time, ...(o.value as { node: string, phase: string, status: string, failed: string[], pid: number | null }) }))
  const healthNodes = [...new Set(health.map(x => x.node))].sort()
  const f: Frame = { w: width, h: 30 + (procs.length + healthNodes.length) * laneH + 26, left: 56, right: 10, top: 22, bottom: 26, tMax }
  const bars = ps.map(p => {
    const lane = procs.indexOf(String(p.invoke.process))
    const end = Number.isFinite(p.complete.time) ? p.complete.time : tMax
    const x0 = x(f, p.invoke.time)
    const w = Math.max(0.8, x(f, end) - x0)
    const c = p.complete.coverage
    const query = c !== undefined ? ` coverage ${c.answered}/${c.total}${c.missing.length > 0 ? ` missing ${c.missing.map(m => `${m.partition} (${m.reason})`).join(', ')}` : ''}${p.complete.confidence !== undefined ? ` confidence ${p.complete.confidence}` : ''}` : ''
    const shown = p.invoke.f === 'load' && p.type === 'ok' ? p.invoke.value : p.complete.value
    const title = `#${p.invoke.index} p${String(p.invoke.process)} ${p.invoke.f} ${p.invoke.key ?? ''} ${JSON.stringify(p.invoke.value)} → ${isPartial(p) ? 'ok (partial)' : p.type} ${JSON.stringify(shown)}${p.complete.error !== undefined ? ` ${p.complete.error}` : ''}${query} via ${p.invoke.coordinator ?? '?'} ${(end - p.invoke.time).toFixed(1)} ms${p.complete.version !== undefined ? ` v=${p.complete.version}` : ''}`
    return `<rect x="${x0.toFixed(1)}" y="${f.top + lane * laneH + 3}" width="${w.toFixed(1)}" height="${laneH - 6}" fill="${color(p)}"><title>${esc(title)}</title></rect>`
  }).join('')
  const healthColor: Record<string, string> = { green: COLORS.ok!, yellow: COLORS.info!, red: COLORS.fail! }
  const healthBars = health.map((h, i) => {
    const lane = procs.length + healthNodes.indexOf(h.node)
    const next = health.slice(i + 1).find(y => y.node === h.node)
    const x0 = x(f, h.time)
    const w = Math.max(1.5, Math.min(x(f, next !== undefined && next.time - h.time < 2000 ? next.time : h.time + 500), f.w - f.right) - x0)
    const title = `${h.node} /health ${h.status} (${h.phase}) at ${(h.time / 1000).toFixed(2)} s${h.failed.length > 0 ? ` failed: ${h.failed.join(', ')}` : ''} pid ${String(h.pid)}`
    return `<rect x="${x0.toFixed(1)}" y="${f.top + lane * laneH + 3}" width="${w.toFixed(1)}" height="${laneH - 6}" fill="${healthColor[h.status] ?? '#777'}" opacity="0.6"><title>${esc(title)}</title></rect>`
  }).join('')
  const labels = [...procs.map(p => `p${p}`), ...healthNodes.map(n => `${n} health`)].map((p, i) => `<text x="${f.left - 6}" y="${f.top + i * laneH + 13}" font-size="10" text-anchor="end">${esc(p)}</text>`).join('')
  const lanes = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${f.h}" font-family="sans-serif">${faultRects(f, windows)}${axes(f, '', [])}${labels}${bars}${healthBars}${legend(f, windows, ps.some(isPartial))}</svg>`
  const r = results as { valid?: unknown, failures?: string[] }
  // What each window's stop recorded (a namespace run's link faults: the packets they dropped).
  const outcome = (w: FaultWindow): string => {
    const stop = ops.find(o => o.process === 'nemesis' && o.f === `stop-${w.kind}` && o.time === w.end)
    return stop?.value === null || stop?.value === undefined ? '' : `<code>${esc(JSON.stringify(stop.value))}</code>`
  }
  const faults = windows.map(w => `<tr><td>${esc(w.kind)}</td><td>${(w.start / 1000).toFixed(1)} s</td><td>${(w.end / 1000).toFixed(1)} s</td><td><code>${esc(JSON.stringify(w.detail))}</code></td><td>${outcome(w)}</td></tr>`).join('')
  return `<!doctype html><html><head><meta charset="utf-8"><title>Shoal jepsen run</title><style>
body{font-family:sans-serif;margin:20px;color:#222} h1{font-size:20px} .valid{font-weight:bold;color:${r.valid === true ? '#2a9d3a' : r.valid === false ? '#d62828' : '#e6a700'}}
.lanes{overflow-x:auto;border:1px solid #ddd} table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
pre{background:#f6f6f6;padding:8px;max-height:400px;overflow:auto;font-size:11px} #hover{font-family:monospace;font-size:12px;min-height:1.2em}
</style></head><body>
<h1>Shoal jepsen run</h1><p>valid: <span class="valid">${esc(String(r.valid))}</span></p>
${(r.failures ?? []).length > 0 ? `<ul>${r.failures!.map(x => `<li>${esc(x)}</li>`).join('')}</ul>` : ''}
<h2>Operations by process</h2><div id="hover">hover an operation</div><div class="lanes">${lanes}</div>
<h2>Latency</h2>${latencySvg(ops)}<h2>Throughput</h2>${throughputSvg(ops)}
<h2>Faults</h2><table><tr><th>kind</th><th>start</th><th>end</th><th>detail</th><th>outcome</th></tr>${faults}</table>
<h2>Results</h2><pre>${esc(JSON.stringify(results, null, 2))}</pre>
<script>document.querySelectorAll('.lanes rect').forEach(function(r){r.addEventListener('mouseenter',function(){var t=r.querySelector('title');document.getElementById('hover').textContent=t?t.textContent:''})})</script>
</body></html>`
}

export async function renderReport (dir: string, ops: readonly Op[], results: unknown): Promise<void> {
  await writeFile(join(dir, 'latency.svg'), latencySvg(ops))
  await writeFile(join(dir, 'throughput.svg'), throughputSvg(ops))
  await writeFile(join(dir, 'timeline.html'), timelineHtml(ops, results))
}
