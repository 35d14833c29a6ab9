/**
 * The WAL files of a partition: the active one new frames go to, the ones still draining after a
 * flush switched away from them, and the sequence numbers of those on disk. One owner for them
 * keeps the rotation (open the next, switch in one tick, retire the old once its records are in
 * a segment) in one place; the file format itself is wal.ts's.
 */
import { join } from 'node:path'
import type { FilePool } from './files.js'
import type { FileSystem } from '../runtime/index.js'
import { removeFiles } from './fsutil.js'
import { WalFile, walFileName, type WalSyncHook } from './wal.js'

export class WalFiles {
  private current: WalFile | undefined
  /** WAL files being drained after a rotation. */
  private draining: WalFile[] = []
  /** Sequence numbers of WAL files on disk (replayed, draining, active). */
  private seqs: number[] = []

  /** `sync`: told of every fsync of any of them (the walFsyncs counter, the fsync durations). */
  constructor (private readonly fs: FileSystem, private readonly dir: string, private readonly files: FilePool, private readonly sync: WalSyncHook) {}

  /** The file new frames are appended to (set by start()). */
  get active (): WalFile { return this.current! }

  /** After recovery: opens file `seq` as the active one, `replayed` being the files still on disk before it. */
  async start (seq: number, replayed: readonly number[]): Promise<void> {
    this.current = await this.open(seq)
    this.seqs = [...replayed, seq]
  }

  private async open (seq: number): Promise<WalFile> {
    return await WalFile.create(this.fs, this.dir, seq, this.files, this.sync)
  }

  /** Opens the file after the active one (durably in the directory); switchTo() then makes it active. */
  async openNext (): Promise<{ seq: number, file: WalFile }> {
    const seq = this.seqs[this.seqs.length - 1]! + 1
    const file = await this.open(seq)
    await this.files.run(async () => { await this.fs.syncDir(this.dir) })
    return { seq, file }
  }

  /** Makes `next` the active file, synchronously; returns the one it replaces, left draining. */
  switchTo (next: { seq: number, file: WalFile }): WalFile {
    const old = this.current!
    this.current = next.file
    this.seqs.push(next.seq)
    this.draining.push(old)
    return old
  }

  /** Closes `old` and deletes every file before `from`: their records are in segments now. */
  async retire (old: WalFile, from: number): Promise<void> {
    this.draining = this.draining.filter(w => w !== old)
    await old.close()
    const gone = this.seqs.filter(s => s < from)
    this.seqs = this.seqs.filter(s => s >= from)
    await this.files.run(async () => { await removeFiles(this.fs, this.dir, gone.map(s => join(this.dir, walFileName(s)))) })
  }

  /** Resolves when everything appended so far is durable. */
  async barrier (): Promise<void> {
    for (const w of [...this.draining, this.active]) await w.drain()
  }

  /** Bytes in the open files (active and draining). */
  bytes (): number {
    let n = this.active.size
    for (const w of this.draining) n += w.size
    return n
  }

  /** Cuts what failed writes left past the durable end of each file (WalFile.cutBrokenTail); throws if the disk refuses. */
  async cutBrokenTails (): Promise<void> {
    for (const w of [...this.draining, ...(this.current !== undefined ? [this.current] : [])]) await w.cutBrokenTail()
  }

  async close (): Promise<void> {
    for (const w of [...this.draining, this.active]) await w.close()
  }
}
