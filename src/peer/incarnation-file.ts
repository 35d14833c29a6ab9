import { join } from 'node:path'
import type { IncarnationStore } from '../membership/index.js'
import { readFileIfThereSync, writeFileDurablySync, type Logger } from '../runtime/index.js'

/** The incarnation file could not be read or written (not: it held garbage, which is ignored). */
export class IncarnationFileError extends Error {
  override name = 'IncarnationFileError'
}

/**
 * The membership incarnation ceiling of this peer, kept in `<data-dir>/incarnation` (issue 13):
 * Swim saves it before it uses an incarnation above it, so a restarted peer starts above every
 * incarnation it announced before and its new meta (HTTP port, readiness) wins at once. Written
 * like the HLC's ceiling (runtime/durable-file.ts), so a crash leaves either the old ceiling or
 * the new one, never a torn file.
 *
 * Unreadable content is ignored with a warning rather than refusing to start (the HLC refuses):
 * losing the ceiling costs little, since Swim also starts at least at the HLC's milliseconds and
 * refutes its previous life when it hears of it.
 */
export class FileIncarnationStore implements IncarnationStore {
  readonly path: string

  constructor (dir: string, private readonly log: Logger) {
    this.path = join(dir, 'incarnation')
  }

  load (): number | undefined {
    let text: string | undefined
    try {
      text = readFileIfThereSync(this.path)
    } catch (err) {
      throw new IncarnationFileError(`cannot read ${this.path}: ${(err as Error).message}`)
    }
    if (text === undefined) return undefined
    const v = Number(text.trim())
    if (text.trim() === '' || !Number.isSafeInteger(v) || v < 0) {
      this.log.warn({ path: this.path, content: text.slice(0, 40) }, 'ignoring an unreadable incarnation file; starting from the clock')
      return undefined
    }
    return v
  }

  save (ceiling: number): void {
    try {
      writeFileDurablySync(this.path, String(ceiling))
    } catch (err) {
      throw new IncarnationFileError(`cannot write ${this.path}: ${(err as Error).message}`)
    }
  }
}
