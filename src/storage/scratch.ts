/**
 * Buffers a read borrows while its bytes are checked and decoded, then gives back. A new buffer
 * a read is memory the kernel must hand over a zeroed page at a time on first touch: a cold scan
 * (one whose columns the cache lost) paid that for the bytes it read on top of the vectors it
 * decoded (bench/scan.ts), and a WAL replay for every key-index block it looked in. A few are
 * kept; each starts at offset 0 of its own buffer (typed-array views over it are aligned).
 */
export class ScratchBuffers {
  private readonly free: Uint8Array[] = []

  /**
   * @param granule sizes are rounded up to a multiple of it, so that a buffer serves the next,
   *   slightly larger, read too
   * @param keep buffers kept for reuse at most (as many as reads borrow at once)
   * @param keepBytes larger buffers are left to the garbage collector
   */
  constructor (private readonly granule: number, private readonly keep: number, private readonly keepBytes: number) {}

  take (bytes: number): Uint8Array {
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i]!.length >= bytes) return this.free.splice(i, 1)[0]!
    }
    return new Uint8Array(Math.ceil(Math.max(bytes, 1) / this.granule) * this.granule)
  }

  give (buf: Uint8Array): void {
    if (buf.length <= this.keepBytes && this.free.length < this.keep) this.free.push(buf)
  }
}
