/**
 * Disk-resident segments (issue 12, docs/architecture.md "Disk-resident segments"): a segment is
 * two files written once and fsynced together,
 *
 * - `seg-<id>.arrow`: a standard Arrow IPC file (any Arrow reader opens it) of record batches of
 *   at most `batchRows` rows, rows in key order (key-index.ts `compareKeys`), the space's columns
 *   plus the hidden `$version` (float64) and `$deleted` (bool) as segment.ts writes them;
 * - `seg-<id>.idx`: a header, the batch directory (segment-file-format.ts: where each column of
 *   each batch lies in the .arrow file, its CRC-32, its zone map), the key-index section, the
 *   utf8 codes of columns of few values (format 3) and the page table.
 *
 * `SegmentFile.open` reads the header, the directory and the key index's resident part, never the
 * rows. `column(b, name, type)` reads one column of one batch with one positional read of exactly
 * its bytes, checks their CRC, rebuilds the Arrow Data from them without parsing Arrow metadata,
 * decodes it with segment.ts's decoders into the columnar form in shared memory and keeps it in
 * the peer's block cache.
 *
 * This module is the face of the concern: writing is segment-file-write.ts (a flush's records,
 * a compaction's merged rows), reading segment-file-read.ts, the .idx layout, names and meta
 * segment-file-format.ts, the compaction's byte-level gathers segment-gather.ts.
 */
export { DEFAULT_BATCH_ROWS, SEGMENT_FILE_FORMAT, SegmentBlockCorruptError, segmentIndexFileName, type SegmentFileMeta, type Zone } from './segment-file-format.js'
export type { SourceColumn } from './segment-gather.js'
export { SegmentFileWriter, writeSegmentFiles, type SegmentFileWriterOptions, type WriteSegmentOptions } from './segment-file-write.js'
export { SegmentFile, type SegmentFileDeps, type SyncReader } from './segment-file-read.js'
