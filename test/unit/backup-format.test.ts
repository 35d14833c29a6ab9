import { mkdir, mkdtemp, readFile, rm, truncate, writeFile, appendFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  AtomicFile, BACKUP_FORMAT, BACKUP_FORMAT_VERSION, BackupCorruptError, BackupSchemaConflictError, checkRecordLine, encodeRecordLine,
  parseManifest, partitionFile, planRestore, readManifest, schemaDifference, TEMP_SUFFIX, verifyBackup, writeManifest,
  type BackupManifest, type ManifestSpace
} from '../../src/backup/index.js'
import { checkSchema } from '../../src/schema/index.js'

const schema = checkSchema([{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'name', type: 'utf8' }])

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-backup-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

/** Writes a two-partition backup of space 'orders' the way the CLI does; returns its manifest. */
async function writeBackup (): Promise<BackupManifest> {
  await mkdir(join(dir, 'orders'))
  const files = []
  const lines = [
    [encodeRecordLine('a', 1024, false, { id: 'a', n: 1, name: 'Ann' }), encodeRecordLine('b', 2048, true, null)],
    [encodeRecordLine('c', 3072, false, { id: 'c', n: 2n ** 60n, name: null })]
  ]
  for (let p = 0; p < 2; p++) {
    const file = await AtomicFile.create(join(dir, partitionFile('orders', p)))
    for (const line of lines[p]!) await file.write(line)
    const sha256 = await file.commit()
    files.push({ partition: p, file: partitionFile('orders', p), records: lines[p]!.length, tombstones: p === 0 ? 1 : 0, bytes: file.bytes, sha256, replicas: ['a', 'b'] })
  }
  const manifest: BackupManifest = {
    format: BACKUP_FORMAT,
    formatVersion: BACKUP_FORMAT_VERSION,
    shoalVersion: '0.1.0',
    startHlc: 1024,
    startTime: new Date(1).toISOString(),
    finishedAt: new Date(2).toISOString(),
    peer: 'http://127.0.0.1:7947',
    complete: true,
    spaces: [{ name: 'orders', uid: 'orders-1', schema, partitions: 2, replicas: 3, files }],
    missing: []
  }
  await writeManifest(dir, manifest)
  return manifest
}

async function refusal (p: Promise<unknown>): Promise<BackupCorruptError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(BackupCorruptError)
  return err as BackupCorruptError
}

describe('backup files and manifest', () => {
  it('verifyBackup() accepts a backup as written and reads its manifest back', async () => {
    const written = await writeBackup()
    const manifest = await verifyBackup(dir)
    expect(manifest).toEqual(written)
    expect(await readdir(join(dir, 'orders'))).toEqual(['0.ndjson', '1.ndjson'])
    // int64 beyond 2^53 travels as a string, tombstones without a row.
    expect(await readFile(join(dir, 'orders/1.ndjson'), 'utf8')).toBe('{"id":"c","v":3072,"row":{"id":"c","n":"1152921504606846976","name":null}}\n')
    expect(await readFile(join(dir, 'orders/0.ndjson'), 'utf8')).toContain('{"id":"b","v":2048,"deleted":true}\n')
  })

  it('writeManifest() refuses a manifest restore would refuse (the catalog\'s limits), writing nothing', async () => {
    const manifest = await writeBackup()
    const again = join(dir, 'again')
    await mkdir(again)
    const space = manifest.spaces[0]!
    for (const bad of [{ ...space, replicas: 17 }, { ...space, partitions: 1025 }]) {
      const err = await refusal(writeManifest(again, { ...manifest, spaces: [bad] }))
      expect(err.message).toMatch(/spaces\[0\]\.(replicas|partitions) must be an integer in 1\.\.(16|1024)/)
    }
    expect(await readdir(again)).toEqual([])
  })

  it('verifyBackup() refuses a file with one byte changed, naming the file', async () => {
    await writeBackup()
    const path = join(dir, 'orders/1.ndjson')
    const bytes = await readFile(path)
    bytes[10] = bytes[10]! ^ 0x01
    await writeFile(path, bytes)
    const err = await refusal(verifyBackup(dir))
    expect(err.file).toBe('orders/1.ndjson')
    expect(err.message).toMatch(/orders\/1\.ndjson has SHA-256 [0-9a-f]{64}, the manifest says/)
  })

  it('verifyBackup() refuses a truncated file, a longer one and a missing one, naming each', async () => {
    await writeBackup()
    await truncate(join(dir, 'orders/0.ndjson'), 5)
    let err = await refusal(verifyBackup(dir))
    expect(err.file).toBe('orders/0.ndjson')
    expect(err.message).toMatch(/is truncated: 5 bytes, the manifest says \d+/)

    await rm(dir, { recursive: true, force: true })
    await mkdir(dir)
    await writeBackup()
    await appendFile(join(dir, 'orders/1.ndjson'), '{"id":"x","v":1,"deleted":true}\n')
    err = await refusal(verifyBackup(dir))
    expect(err.file).toBe('orders/1.ndjson')
    expect(err.message).toMatch(/is longer than written/)

    await rm(join(dir, 'orders/1.ndjson'))
    err = await refusal(verifyBackup(dir))
    expect(err.message).toBe('backup file orders/1.ndjson is missing')
  })

  it('a directory without manifest.json is not a backup (an interrupted one writes none)', async () => {
    const err = await refusal(readManifest(dir))
    expect(err.file).toBe('manifest.json')
    expect(err.message).toMatch(/did not finish/)
  })

  it('AtomicFile leaves no file at its path until committed, and nothing after abort()', async () => {
    const path = join(dir, 'x.ndjson')
    const file = await AtomicFile.create(path)
    await file.write('{"id":"a"}\n')
    expect(await readdir(dir)).toEqual([`x.ndjson${TEMP_SUFFIX}`])
    await file.abort()
    expect(await readdir(dir)).toEqual([])
    const again = await AtomicFile.create(path)
    await again.write('hello\n')
    expect(await again.commit()).toBe('5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03')
    await expect(AtomicFile.create(path)).rejects.toThrow(/exists/)
  })

  it('parseManifest() refuses what it cannot trust, naming the field', async () => {
    const good = await writeBackup()
    const bad = (change: (m: Record<string, any>) => void): string => {
      const m = JSON.parse(JSON.stringify(good)) as Record<string, any>
      change(m)
      try {
        parseManifest(JSON.stringify(m))
      } catch (err) {
        expect(err).toBeInstanceOf(BackupCorruptError)
        return (err as Error).message
      }
      throw new Error('accepted')
    }
    expect(() => parseManifest('{"format": "shoal-backup", ')).toThrow(/manifest.json is not valid JSON/)
    expect(bad(m => { m.formatVersion = 2 })).toMatch(/format version 2; this build reads version 1 \(written by a newer Shoal/)
    // A manifest must not make a restore read outside its directory.
    expect(bad(m => { m.spaces[0].files[0].file = '../../etc/passwd' })).toMatch(/files\[0\]\.file must be 'orders\/0\.ndjson'/)
    expect(bad(m => { m.spaces[0].files[0].sha256 = 'abc' })).toMatch(/sha256 must be 64 hex digits/)
    expect(bad(m => { m.spaces[0].files.pop() })).toMatch(/neither a file nor a missing entry for partition 1 of 'orders'/)
    expect(bad(m => { m.spaces[0].schema = [{ name: 'id', type: 'utf9' }] })).toMatch(/spaces\[0\]\.schema/)
    expect(bad(m => { m.missing = [{ space: 'orders', partition: 1, reason: 'x' }] })).toMatch(/says complete but lists missing/)
  })
})

describe('backup record lines', () => {
  it('checkRecordLine() takes rows and tombstones and names what is wrong', () => {
    expect(checkRecordLine({ id: 'a', v: 5, row: { id: 'a' } })).toEqual({ id: 'a', version: 5, deleted: false, row: { id: 'a' } })
    expect(checkRecordLine({ id: 'a', v: 5, deleted: true })).toEqual({ id: 'a', version: 5, deleted: true, row: null })
    expect(checkRecordLine({ id: 'a', v: -1, row: {} })).toMatchObject({ field: 'v' })
    expect(checkRecordLine({ id: 'a', v: 1.5, row: {} })).toMatchObject({ field: 'v' })
    expect(checkRecordLine({ id: '', v: 1, row: {} })).toMatchObject({ field: 'id' })
    expect(checkRecordLine({ id: 'a', v: 1, deleted: true, row: { id: 'a' } })).toMatchObject({ field: 'row' })
    expect(checkRecordLine({ id: 'a', v: 1, row: {}, extra: 1 })).toMatchObject({ field: 'extra' })
    expect(checkRecordLine([1])).toMatchObject({ field: '' })
  })
})

describe('restore plan', () => {
  const space = (name: string, s = schema): ManifestSpace => ({ name, uid: `${name}-1`, schema: s, partitions: 8, replicas: 3, files: [] })

  it('creates missing spaces and restores into ones with the same schema', () => {
    const plan = planRestore([space('a'), space('b')], [{ name: 'b', schema: [...schema].reverse(), partitions: 4, replicas: 3 }])
    expect(plan.create.map(s => s.name)).toEqual(['a'])
    expect(plan.existing).toEqual([{ space: space('b'), note: "4 partitions in the cluster, 8 in the backup (records are placed by the cluster's)" }])
  })

  it('refuses a space that exists with another schema, naming every such space and the difference', () => {
    const other = checkSchema([{ name: 'id', type: 'utf8' }, { name: 'n', type: 'float64' }, { name: 'extra', type: 'bool' }])
    let err: unknown
    try {
      planRestore([space('a'), space('b'), space('c')], [
        { name: 'a', schema: other, partitions: 8, replicas: 3 },
        { name: 'c', schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64', nullable: false }, { name: 'name', type: 'utf8' }]), partitions: 8, replicas: 3 }
      ])
    } catch (e) { err = e }
    expect(err).toBeInstanceOf(BackupSchemaConflictError)
    const e = err as BackupSchemaConflictError
    expect(e.conflicts.map(c => c.space)).toEqual(['a', 'c'])
    expect(e.space).toBe('a')
    expect(e.difference).toBe("column 'n' is int64 in the backup, float64 in the cluster; column 'name' (utf8) is in the backup, not in the cluster; column 'extra' (bool) is in the cluster, not in the backup")
    expect(e.message).toContain("space 'c' exists in the cluster with another schema than in the backup: column 'n' is nullable in the backup, not null in the cluster")
  })

  it('schemaDifference() ignores column order', () => {
    expect(schemaDifference(schema, [...schema].reverse())).toBeUndefined()
  })
})
