/**
 * The latency histograms and the per-space, per-target figures on /metrics (issue 14): what an
 * SRE alerts on, all in base units. Each is read at scrape time from a plain recorder the layer
 * keeps (runtime's HistogramFamily, the storage engine's io figures, the hint store's queues), as
 * the rest of Peer.registerMetrics does; docs/operations.md lists every metric.
 */
import type { PeerMetrics, Sample } from '../metrics/index.js'
import type { CounterFamily, HistogramFamily, HistogramView } from '../runtime/index.js'

/** What these metrics read: a narrow view of the layers, each a plain recorder or a getter. */
export interface MetricSources {
  http: { requestStats: { durations: HistogramFamily, requests: CounterFamily } }
  data: { timings: { writes: HistogramFamily, reads: HistogramFamily } }
  queries: { durations: HistogramFamily }
  storage: {
    io: { walFsyncSeconds: HistogramView, compactions: number, compactionBytesRead: number, compactionBytesWritten: number }
    /** The open partition replicas: their space's name and their figures. */
    partitions(): Array<{ space: { name: string }, stats(): { segments: number, walBytes: number, diskBytes: number } }>
  }
  hints: { pendingByTarget(): Array<{ target: string, hints: number }> }
  /** A peer's labels where a peer is meant: its name (its id while no name is known) and its id. */
  peerLabels(peerId: string): { peer: string, peer_id: string }
}

export function registerOperationalMetrics (m: PeerMetrics, s: MetricSources): void {
  m.histogramFrom('shoal_http_request_duration_seconds', 'HTTP requests served, by method and route (the route\'s pattern; unmatched: no route), from arrival to the answer\'s last byte', ['method', 'route'], () => s.http.requestStats.durations.entries())
  m.counterFrom('shoal_http_requests_total', 'HTTP requests served, by method, route and status (none: the connection closed before an answer was sent)', ['method', 'route', 'status'], () =>
    s.http.requestStats.requests.entries().map(([labels, c]): Sample => [labels, c.value]))
  m.histogramFrom('shoal_write_duration_seconds', 'Writes of records this peer coordinated (op put or delete), by consistency level and outcome (ok, or error: the level was not met or the write failed)', ['op', 'consistency', 'outcome'], () => s.data.timings.writes.entries())
  m.histogramFrom('shoal_read_duration_seconds', 'Reads of records by id this peer coordinated, by consistency level and outcome (ok, found or not; error)', ['consistency', 'outcome'], () => s.data.timings.reads.entries())
  m.histogramFrom('shoal_query_duration_seconds', 'Queries this peer coordinated, until the answer was ready to stream, by strategy (none: failed before planning) and outcome (ok, partial, error)', ['strategy', 'outcome'], () => s.queries.durations.entries())

  m.histogramFrom('shoal_storage_wal_fsync_duration_seconds', 'WAL fdatasync calls (one per group commit, across every partition): a write is answered only after its own', [], () => [[{}, s.storage.io.walFsyncSeconds]])
  const bySpace = (): Map<string, { segments: number, segmentBytes: number, diskBytes: number }> => {
    const out = new Map<string, { segments: number, segmentBytes: number, diskBytes: number }>()
    for (const p of s.storage.partitions()) {
      const st = p.stats()
      const t = out.get(p.space.name) ?? { segments: 0, segmentBytes: 0, diskBytes: 0 }
      t.segments += st.segments
      t.segmentBytes += st.diskBytes - st.walBytes
      t.diskBytes += st.diskBytes
      out.set(p.space.name, t)
    }
    return out
  }
  m.gaugeFrom('shoal_storage_disk_bytes', 'Bytes on disk of this peer\'s replicas of each space: segment files (.arrow and .idx) and WAL', ['space'], () => [...bySpace()].map(([space, t]): Sample => [{ space }, t.diskBytes]))
  m.gaugeFrom('shoal_storage_segments', 'Segment files of this peer\'s replicas of each space (compaction keeps them few)', ['space'], () => [...bySpace()].map(([space, t]): Sample => [{ space }, t.segments]))
  m.gaugeFrom('shoal_storage_segment_bytes', 'Bytes of the segment files (.arrow and .idx) of this peer\'s replicas of each space', ['space'], () => [...bySpace()].map(([space, t]): Sample => [{ space }, t.segmentBytes]))
  m.counterFrom('shoal_storage_compactions_completed_total', 'Compactions that merged segments and swapped the result in', [], () => [[{}, s.storage.io.compactions]])
  m.counterFrom('shoal_storage_compaction_bytes_total', 'Segment bytes compactions read (their inputs) and wrote (their output)', ['direction'], () => [
    [{ direction: 'read' }, s.storage.io.compactionBytesRead], [{ direction: 'written' }, s.storage.io.compactionBytesWritten]
  ])

  m.gaugeFrom('shoal_hints_pending_by_target', 'Hints this peer holds for each replica that has not taken them yet (the sum is shoal_hints_pending)', ['peer', 'peer_id'], () =>
    s.hints.pendingByTarget().map(({ target, hints }): Sample => [s.peerLabels(target), hints]))
}
