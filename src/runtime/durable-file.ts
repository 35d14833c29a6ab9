/**
 * Small state files a peer must not lose or tear (the HLC's ceiling, the SWIM incarnation's):
 * written to a temporary file, fsynced, renamed over the old one, then the directory fsynced, so a
 * crash or power cut leaves either the old content or the new, never a torn file, and the rename
 * itself survives (without the directory fsync a power cut can bring the old file back).
 * Synchronous: these files are written rarely (a lease extended every few seconds at most) and the
 * value must be durable before the caller uses what it covers.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'

export function writeFileDurablySync (path: string, text: string): void {
  const tmp = path + '.tmp'
  const fd = openSync(tmp, 'w', 0o600)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  // Some platforms cannot fsync a directory; there the rename is as durable as they allow.
  try {
    const dfd = openSync(dirname(path), 'r')
    try { fsyncSync(dfd) } finally { closeSync(dfd) }
  } catch {}
}

/** Such a file's text, or undefined when there is none (any other read error is thrown). */
export function readFileIfThereSync (path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}
