import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { autoLibp2pConnections, FileLimitError, FIXED_FILES, MAX_AUTO_LIBP2P_CONNECTIONS, openFileLimit, planFileBudget } from '../../src/peer/file-budget.js'
import { CONNECTION_MARGIN, ConnectionCapWatch } from '../../src/peer/connection-cap.js'
import type { Logger } from '../../src/runtime/index.js'

describe('the open-file budget', () => {
  it('splits ulimit -n 1024 so that every holder fits under it', () => {
    const b = planFileBudget(1024, { libp2pConnections: 300 })
    expect(b).toEqual({ limit: 1024, fixed: FIXED_FILES, libp2pConnections: 300, httpConnections: 330, storageFiles: 256 })
    expect(b.fixed + b.libp2pConnections + b.httpConnections + b.storageFiles).toBeLessThanOrEqual(1024)
  })

  it('caps each share at its default when the limit is large, and uses the defaults when it is unknown', () => {
    expect(planFileBudget(1 << 20, { libp2pConnections: 300 })).toMatchObject({ httpConnections: 1024, storageFiles: 256 })
    expect(planFileBudget(undefined, { libp2pConnections: 300, httpConnections: 10 })).toMatchObject({ httpConnections: 10, storageFiles: 256 })
  })

  it('gives what the operator set, and the rest to the other share', () => {
    expect(planFileBudget(1024, { libp2pConnections: 300, storageFiles: 600 })).toMatchObject({ httpConnections: 60, storageFiles: 600 })
    expect(planFileBudget(1024, { libp2pConnections: 300, httpConnections: 100 })).toMatchObject({ httpConnections: 100, storageFiles: 256 })
  })

  it('sizes the libp2p connections, when nothing sets them, at half of what the limit leaves: room for a cluster of thousands', () => {
    expect(autoLibp2pConnections(undefined)).toBe(300)
    expect(autoLibp2pConnections(1024)).toBe((1024 - 128) / 2)
    expect(autoLibp2pConnections(20_000)).toBe((20_000 - 128) / 2)
    expect(autoLibp2pConnections(1 << 20)).toBe(MAX_AUTO_LIBP2P_CONNECTIONS)
    expect(autoLibp2pConnections(150)).toBe(64)
    const b = planFileBudget(1024, {})
    expect(b).toEqual({ limit: 1024, fixed: FIXED_FILES, libp2pConnections: 448, httpConnections: 256, storageFiles: 256 })
    expect(b.fixed + b.libp2pConnections + b.httpConnections + b.storageFiles).toBeLessThanOrEqual(1024)
    expect(() => planFileBudget(150, {})).toThrow(/ulimit -n\) is 150; a peer needs at least 192/)
  })

  it('warns once when the cluster outgrows the connection cap, and says when it fits again', () => {
    const lines: Array<[string, Record<string, unknown>, string]> = []
    const log: Logger = {
      debug: () => {},
      info: (obj, msg) => { lines.push(['info', obj as Record<string, unknown>, msg ?? '']) },
      warn: (obj, msg) => { lines.push(['warn', obj as Record<string, unknown>, msg ?? '']) },
      error: () => {},
      child: () => log
    }
    const w = new ConnectionCapWatch(100, log)
    expect(w.members).toBe(100 - CONNECTION_MARGIN)
    expect(w.observe(84)).toBe(false)
    expect(w.observe(85)).toBe(true)
    expect(w.observe(90)).toBe(true)
    expect(lines.map(l => l[0])).toEqual(['warn'])
    expect(lines[0]![1]).toMatchObject({ members: 85, maxPeerConnections: 100 })
    expect(lines[0]![2]).toMatch(/Raise maxPeerConnections/)
    expect(w.observe(10)).toBe(false)
    expect(w.observe(200)).toBe(true)
    expect(lines.map(l => l[0])).toEqual(['warn', 'info', 'warn'])
    expect(() => new ConnectionCapWatch(0, log)).toThrow(RangeError)
  })

  it('refuses a limit too small to run, and settings that do not fit, naming what to change', () => {
    expect(() => planFileBudget(400, { libp2pConnections: 300 })).toThrow(FileLimitError)
    expect(() => planFileBudget(400, { libp2pConnections: 300 })).toThrow(/ulimit -n\) is 400; a peer needs at least 428/)
    expect(() => planFileBudget(1024, { libp2pConnections: 300, httpConnections: 700 })).toThrow(/maxHttpConnections 700 does not fit/)
    expect(() => planFileBudget(1024, { libp2pConnections: 300, storageFiles: 700 })).toThrow(/storage.maxOpenFiles 700 does not fit/)
  })

  it('reads the soft limit from a limits file, and knows nothing from an unlimited or missing one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-limits-'))
    try {
      const file = join(dir, 'limits')
      await writeFile(file, 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n')
      expect(await openFileLimit(file)).toBe(1024)
      await writeFile(file, 'Max open files            unlimited            unlimited            files\n')
      expect(await openFileLimit(file)).toBeUndefined()
      expect(await openFileLimit(join(dir, 'none'))).toBeUndefined()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
