/**
 * The disk nemesis's checker (issue 13): from the history's start-disk / disk-fill / disk-fault /
 * disk-health / stop-disk operations (../disk.ts) and the workloads' operations, per faulty peer
 * of every disk window (mode fill: its disk full; mode fsync: its WAL fsyncs failing with EIO):
 *
 * - filled (fill): the ballast left (almost) no room (at most FULL_SLACK_BYTES free); a fill that
 *   failed makes the window unknown (nothing was tested). Faulted (fsync): the peer took the
 *   fault rules; otherwise, or when they failed no fsync at all (`injected` 0: nothing tested,
 *   say no write reached it), the window is unknown;
 * - noticed (gated): some /health sample during the window is not green and names a failed
 *   partition with ENOSPC (fill) or EIO (fsync): the peer knows and says so (not a zombie
 *   replica). Not judged when the fault lasted less than MIN_FULL_MS (a window the runner started
 *   late, behind a slow restart, can be that short): `tooShort`;
 * - stayed up (gated): every sample from the window's start to the end of the heal has the same
 *   pid and a running process (the peer neither crashed nor was restarted);
 * - healed (gated): after the ballast is deleted or the fault rules cleared, a sample with no
 *   failed partition, and one green, within the window's heal bound (`healBoundMs` of
 *   start-disk), without a restart (fsync: its failed replicas rebuilt from the others). A
 *   partition the peer gave up rebuilding (`givenUp`: 3 rebuilds in a row failed again; then
 *   back once its disk passes a probe; docs/operations.md) is named in the violation.
 *
 * Samples taken after the next fault window has started (any kind: it may kill this peer, or keep
 * every peer from green) are not judged; a peer not yet healed or green by then is `masked`,
 * reported and not gated.
 * - kept acknowledging (gated): set adds (and register writes, reported) acknowledged during the
 *   window: some when the set workload ran;
 * - readable at ALL (gated through the set checker too): every set add acknowledged during the
 *   window and not removed is present in the final read at ALL; one not read makes it unknown.
 */
import type { Op } from '../history.js'

/** Free bytes a filled disk may still report (tmpfs rounds to pages; a last partial write). */
export const FULL_SLACK_BYTES = 64 << 10
/** A disk full for less than this is not held to saying so (a flush meets it within a second or two). */
export const MIN_FULL_MS = 4000

export interface DiskNodeResult {
  node: string
  mode: string
  /** fill: ballast bytes written, and free bytes left; null when no fill was recorded (or an fsync window). */
  fill: { ballastBytes: number, freeBytes: number, usedBytes: number, sizeBytes: number, error?: string } | null
  topUps: { count: number, bytes: number } | null
  /** fsync: the fault rules the peer took (null when none was recorded, or a fill window). */
  fault: { rules: unknown[], injectedBefore?: number, error?: string } | null
  /** fsync: file operations the rules failed during the window (null: unknown, or a fill window). */
  injected: number | null
  /** /health before the fault. */
  before: string | null
  /** Samples during the window; not green; naming a partition failed with ENOSPC / EIO. */
  windowSamples: number
  notGreen: number
  namingEnospc: number
  namingEio: number
  /** ms from the window's start to the first not-green sample naming the mode's error; null: never. */
  noticedAfterMs: number | null
  /** The failed partitions it named (`<space>/<partition> <code>`), over the window. */
  failedPartitions: string[]
  /** ms from the fill / the fault rules set to the end of the fault; below MIN_FULL_MS `noticed` is not judged (tooShort). */
  faultForMs: number | null
  tooShort: boolean
  /** Partitions the peer gave up rebuilding (after 3 in a row), named in any sample from the window on. */
  givenUp: string[]
  /** ms from stop-disk until no failed partition was named / until green; null: not within the bound. */
  failuresGoneAfterMs: number | null
  greenAfterMs: number | null
  /** Another fault window started before the peer had healed or was green: not judged. */
  masked: boolean
  /** The process ids seen (one unless it was restarted), and samples without a running process. */
  pids: number[]
  down: number
  problems: string[]
}

export interface DiskWindowResult {
  mode: string
  start: number
  end: number
  nodes: DiskNodeResult[]
  healBoundMs: number
  /** Acknowledged during the window: set adds, register writes. */
  acknowledged: { set: number, register: number }
  /** The set adds acknowledged in the window, in the final reads at ALL. */
  readAtAll: { acknowledged: number, present: number, removed: number, absent: string[], unread: string[] }
  verdict: boolean | 'unknown'
}

export interface DiskResult {
  valid: boolean | 'unknown'
  windows: DiskWindowResult[]
  /** One line per violated check. */
  violations: string[]
  /** Why a window is unknown. */
  unknown: string[]
  /** Set by the runner when the run had fill windows but could not mount a tmpfs: why they were skipped (skip-disk). */
  skipped?: string
  /** How many disk windows were skipped (fill windows without a tmpfs). */
  skippedWindows?: number
}

/** A disk window's node judged on every count: the fault tested, noticed (not cut short), healed and green within the bound, not masked. */
export function judgedOnEveryCount (n: DiskNodeResult): boolean {
  return n.noticedAfterMs !== null && n.greenAfterMs !== null && n.failuresGoneAfterMs !== null && !n.tooShort && !n.masked && n.problems.length === 0
}

/** The disk result in short, for a run's summary line (ci.test.ts, cli.ts). */
export function diskSummary (d: DiskResult): Record<string, unknown> {
  return {
    ...(d.skipped !== undefined ? { skipped: d.skipped, skippedWindows: d.skippedWindows } : {}),
    windows: d.windows.map(w => ({
      mode: w.mode,
      at: [w.start, w.end].map(t => Math.round(t)),
      verdict: w.verdict,
      acknowledged: w.acknowledged,
      readAtAll: { acknowledged: w.readAtAll.acknowledged, present: w.readAtAll.present, removed: w.readAtAll.removed, absent: w.readAtAll.absent.length, unread: w.readAtAll.unread.length },
      nodes: w.nodes.map(n => ({
        node: n.node,
        ...(n.fill !== null ? { ballastMiB: Math.round(n.fill.ballastBytes / 2 ** 20 * 10) / 10, freeBytes: n.fill.freeBytes, usedMiB: Math.round(n.fill.usedBytes / 2 ** 20 * 10) / 10, topUps: n.topUps?.count } : {}),
        ...(n.mode === 'fsync' ? { injected: n.injected, namingEio: n.namingEio } : { namingEnospc: n.namingEnospc }),
        samples: n.windowSamples,
        notGreen: n.notGreen,
        noticedAfterMs: n.noticedAfterMs,
        failedPartitions: n.failedPartitions.length,
        faultForMs: n.faultForMs,
        tooShort: n.tooShort,
        failuresGoneAfterMs: n.failuresGoneAfterMs,
        greenAfterMs: n.greenAfterMs,
        masked: n.masked,
        ...(n.givenUp.length > 0 ? { givenUp: n.givenUp } : {}),
        pids: n.pids.length,
        judged: judgedOnEveryCount(n)
      }))
    })),
    violations: d.violations,
    unknown: d.unknown
  }
}

interface Sample { node: string, phase: string, status: string, failed: string[], givenUp?: string[], pid: number | null, running: boolean, error?: string }

export function checkDisk (ops: readonly Op[]): DiskResult {
  const violations: string[] = []
  const unknown: string[] = []
  const windows: DiskWindowResult[] = []
  const nemesis = ops.filter(o => o.process === 'nemesis')
  // The final reads at ALL: the last answer per set id.
  const finalSet = new Map<string, boolean>()
  for (const o of ops) if (o.workload === 'set' && o.f === 'final-read' && o.type === 'ok' && o.key !== undefined) finalSet.set(o.key, o.value === true)
  const removedSet = new Set(ops.filter(o => o.workload === 'set' && o.f === 'remove' && (o.type === 'ok' || o.type === 'info')).map(o => o.key!))
  const setRan = ops.some(o => o.workload === 'set' && o.f === 'add')

  for (let i = 0; i < nemesis.length; i++) {
    const s = nemesis[i]!
    if (s.f !== 'start-disk') continue
    const sv = s.value as { mode?: string, nodes?: string[], healBoundMs?: number }
    const stopIdx = nemesis.findIndex((o, j) => j > i && o.f === 'stop-disk')
    const stop = stopIdx >= 0 ? nemesis[stopIdx]! : undefined
    const end = stop?.time ?? Infinity
    const bound = sv.healBoundMs ?? 30_000
    // The next fault window after this one (any kind): samples from then on are not judged.
    const nextFault = nemesis.find((o, j) => j > (stopIdx >= 0 ? stopIdx : i) && o.f.startsWith('start-'))
    const horizon = nextFault?.time ?? Infinity
    const nextIsDisk = nemesis.findIndex((o, j) => j > i && o.f === 'start-disk')
    const laterLimit = nextIsDisk >= 0 ? nemesis[nextIsDisk]!.time : Infinity
    const label = `disk window ${(s.time / 1000).toFixed(1)}-${(end / 1000).toFixed(1)} s`
    const w: DiskWindowResult = {
      mode: sv.mode ?? 'fill',
      start: s.time,
      end,
      nodes: [],
      healBoundMs: bound,
      acknowledged: { set: 0, register: 0 },
      readAtAll: { acknowledged: 0, present: 0, removed: 0, absent: [], unread: [] },
      verdict: true
    }
    let unknownHere = false
    const fail = (line: string): void => { violations.push(`${label}: ${line}`); w.verdict = false }
    if (stop === undefined) { unknown.push(`${label}: never stopped`); unknownHere = true }

    const mode = sv.mode ?? 'fill'
    const healed = mode === 'fill' ? 'the ballast was deleted' : 'the fault rules were cleared'
    for (const node of sv.nodes ?? []) {
      const mine = nemesis.filter((o, j) => j > i && o.time < laterLimit && (o.value as { node?: string } | null)?.node === node)
      const fillOp = mode === 'fill' ? mine.find(o => o.f === 'disk-fill') : undefined
      const faultOp = mode === 'fsync' ? mine.find(o => o.f === 'disk-fault') : undefined
      const setOp = fillOp ?? faultOp
      const samples = mine.filter(o => o.f === 'disk-health' && o.time < horizon).map(o => ({ ...(o.value as Sample), time: o.time }))
      const before = samples.find(x => x.phase === 'before')
      const during = samples.filter(x => x.phase === 'window')
      const heal = samples.filter(x => x.phase === 'heal')
      const naming = (re: RegExp) => (x: Sample): boolean => x.failed.some(f => re.test(f))
      const enospc = naming(/ (ENOSPC|EDQUOT)$/)
      const eio = naming(/ EIO$/)
      const says = mode === 'fill' ? enospc : eio
      const noticed = during.find(x => x.status !== 'green' && says(x))
      const gone = heal.find(x => x.failed.length === 0 && x.status !== 'no-answer')
      const green = heal.find(x => x.status === 'green' && x.failed.length === 0)
      const stopValue = stop?.value as { topUps?: Record<string, { count: number, bytes: number }>, injected?: Record<string, number | null> } | null | undefined
      const topUps = mode === 'fill' ? stopValue?.topUps?.[node] ?? null : null
      const injected = mode === 'fsync' ? stopValue?.injected?.[node] ?? null : null
      const judged = [...during, ...heal]
      const pids = [...new Set([before, ...judged].flatMap(x => (x?.pid ?? null) === null ? [] : [x!.pid!]))]
      const r: DiskNodeResult = {
        node,
        mode,
        fill: fillOp === undefined ? null : (() => { const { node: _n, ...f } = fillOp.value as DiskNodeResult['fill'] & { node: string }; return f })(),
        topUps,
        fault: faultOp === undefined ? null : (() => { const { node: _n, ...f } = faultOp.value as NonNullable<DiskNodeResult['fault']> & { node: string }; return f })(),
        injected,
        before: before?.status ?? null,
        windowSamples: during.length,
        notGreen: during.filter(x => x.status !== 'green').length,
        namingEnospc: during.filter(enospc).length,
        namingEio: during.filter(eio).length,
        noticedAfterMs: noticed === undefined ? null : Math.round(noticed.time - s.time),
        failedPartitions: [...new Set(during.flatMap(x => x.failed))].sort(),
        faultForMs: setOp === undefined || stop === undefined ? null : Math.round(stop.time - setOp.time),
        tooShort: false,
        givenUp: [...new Set(judged.flatMap(x => x.givenUp ?? []))].sort(),
        failuresGoneAfterMs: gone === undefined || stop === undefined ? null : Math.round(gone.time - stop.time),
        greenAfterMs: green === undefined || stop === undefined ? null : Math.round(green.time - stop.time),
        masked: false,
        pids,
        down: judged.filter(x => !x.running).length,
        problems: []
      }
      const problem = (line: string): void => { r.problems.push(line); fail(`${node} ${line}`) }
      // Was anything tested? A fill that did not fill, fault rules not taken, or rules that failed nothing.
      let untested: string | undefined
      if (mode === 'fill') {
        if (r.fill === null || r.fill.error !== undefined) untested = `${node}'s disk was not filled (${r.fill?.error ?? 'no fill recorded'})`
        else if (r.fill.freeBytes > FULL_SLACK_BYTES) untested = `${node}'s disk kept ${r.fill.freeBytes} B free after the fill`
      } else if (mode === 'fsync') {
        if (r.fault === null || r.fault.error !== undefined) untested = `${node}'s fault rules were not set (${r.fault?.error ?? 'no disk-fault recorded'})`
        else if (r.injected === 0 && noticed === undefined) untested = `${node}'s fault rules failed no fsync during the window`
      } else {
        untested = `unknown disk mode '${mode}'`
      }
      if (untested !== undefined) {
        unknown.push(`${label}: ${untested}`)
        unknownHere = true
      } else {
        r.tooShort = r.faultForMs !== null && r.faultForMs < MIN_FULL_MS
        if (noticed === undefined && !r.tooShort) {
          problem(mode === 'fill'
            ? `never said its disk was full: no /health sample during the window was not green naming an ENOSPC partition (${during.length} samples: ${[...new Set(during.map(x => x.status))].join(', ') || 'none'})`
            : `never said its disk failed: no /health sample during the window was not green naming an EIO partition, ${r.injected ?? '?'} fsyncs failed (${during.length} samples: ${[...new Set(during.map(x => x.status))].join(', ') || 'none'})`)
        }
        if (r.pids.length > 1) problem(`was restarted or replaced: pids ${r.pids.join(', ')}`)
        if (r.down > 0) problem(`was down in ${r.down} samples`)
        if (stop !== undefined) {
          const gone = r.failuresGoneAfterMs !== null && r.failuresGoneAfterMs <= bound
          const greenInTime = r.greenAfterMs !== null && r.greenAfterMs <= bound
          if (!gone || !greenInTime) {
            const gaveUp = r.givenUp.length > 0 ? `; it gave up rebuilding ${r.givenUp.join(', ')} (3 rebuilds in a row failed again: out of service until a restart)` : ''
            // Another fault (even another peer's disk) may kill it or keep everyone from green.
            if (horizon < stop.time + bound) r.masked = true
            else if (!gone) problem(`still named failed partitions ${bound} ms after ${healed} (${heal.at(-1)?.failed.join(', ') ?? 'no sample'})${gaveUp}`)
            else problem(`not green within ${bound} ms of the end of its fault (${healed}; last: ${heal.at(-1)?.status ?? 'no sample'})${gaveUp}`)
          }
        }
      }
      w.nodes.push(r)
    }

    // What the cluster acknowledged meanwhile, and whether the final reads at ALL see it.
    const acked = ops.filter(o => o.type === 'ok' && o.time >= s.time && o.time <= end && typeof o.process === 'number')
    w.acknowledged.set = acked.filter(o => o.workload === 'set' && o.f === 'add').length
    w.acknowledged.register = acked.filter(o => o.workload === 'register' && o.f === 'write').length
    if (setRan && stop !== undefined && w.acknowledged.set === 0 && w.nodes.some(n => (n.fill !== null && n.fill.error === undefined) || (n.fault !== null && n.fault.error === undefined))) {
      fail(mode === 'fill'
        ? 'no set add was acknowledged while the disk was full (a minority\'s disk: a majority of every partition\'s replicas had room)'
        : 'no set add was acknowledged while fsync failed (a minority\'s disk: a majority of every partition\'s replicas had working disks)')
    }
    for (const o of acked) {
      if (o.workload !== 'set' || o.f !== 'add') continue
      const id = o.key!
      w.readAtAll.acknowledged++
      if (removedSet.has(id)) { w.readAtAll.removed++; continue }
      const present = finalSet.get(id)
      if (present === true) w.readAtAll.present++
      else if (present === false) w.readAtAll.absent.push(id)
      else w.readAtAll.unread.push(id)
    }
    if (w.readAtAll.absent.length > 0) fail(`${w.readAtAll.absent.length} set adds acknowledged during the window are absent at ALL: ${w.readAtAll.absent.slice(0, 10).join(', ')}`)
    if (w.readAtAll.unread.length > 0) { unknown.push(`${label}: ${w.readAtAll.unread.length} set adds acknowledged during the window were never read at ALL`); unknownHere = true }
    if (w.verdict === true && unknownHere) w.verdict = 'unknown'
    windows.push(w)
  }
  const valid = windows.some(w => w.verdict === false) ? false : windows.some(w => w.verdict === 'unknown') ? 'unknown' : true
  return { valid, windows, violations, unknown }
}
