export interface TableOptions {
  /** Per column; 'right' pads on the left (numbers). Default 'left'. */
  align?: Array<'left' | 'right'>
  /** Underline the headers with dashes. */
  rule?: boolean
}

/** Left-aligned text columns for humans; scripts use --json. */
export function formatTable (headers: string[], rows: string[][], opts: TableOptions = {}): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const right = (i: number): boolean => opts.align?.[i] === 'right'
  const line = (cells: string[]): string => cells.map((c, i) => right(i) ? c.padStart(widths[i]!) : i === cells.length - 1 ? c : c.padEnd(widths[i]!)).join('  ').trimEnd()
  const rule = opts.rule === true ? [widths.map(w => '-'.repeat(w)).join('  ')] : []
  return [line(headers), ...rule, ...rows.map(line)].join('\n') + '\n'
}

/** Bytes for humans, in binary units: `512 B`, `1.5 KiB`, `340 MiB`. */
export function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`
}
