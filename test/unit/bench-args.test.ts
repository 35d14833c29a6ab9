import { describe, expect, it } from 'vitest'
import { BenchArgsError, benchUsage, parseBenchArgs } from '../../scripts/bench/parts.js'

const PARTS = ['rpc', 'swim', 'storage', 'cluster', 'query', 'scan'].map(name => ({ name, description: `the ${name} part` }))
const parse = (...argv: string[]): ReturnType<typeof parseBenchArgs> => parseBenchArgs(argv, PARTS)

describe('bench command line', () => {
  it('runs every part without --only', () => {
    expect(parse()).toEqual({ quick: false, help: false, only: ['rpc', 'swim', 'storage', 'cluster', 'query', 'scan'] })
    expect(parse('--quick').quick).toBe(true)
  })

  it('runs only the parts named, in the table order, with or without --quick', () => {
    expect(parse('--only', 'swim').only).toEqual(['swim'])
    expect(parse('--only', 'scan,rpc', '--quick')).toEqual({ quick: true, help: false, only: ['rpc', 'scan'] })
    expect(parse('--quick', '--only=query').only).toEqual(['query'])
    expect(parse('--only', 'swim', '--only', 'rpc,swim').only).toEqual(['rpc', 'swim'])
  })

  it('rejects an unknown part, naming the valid ones', () => {
    expect(() => parse('--only', 'swim,rpcs')).toThrow(BenchArgsError)
    expect(() => parse('--only', 'swim,rpcs')).toThrow("unknown part 'rpcs'; the parts are: rpc, swim, storage, cluster, query, scan")
    expect(() => parse('--only=SWIM')).toThrow(/unknown part 'SWIM'/)
  })

  it('rejects --only without a name, and unknown arguments', () => {
    expect(() => parse('--only')).toThrow(/--only needs a part name/)
    expect(() => parse('--only', '--quick')).toThrow(/--only needs a part name/)
    expect(() => parse('--only=,')).toThrow(/--only needs a part name/)
    expect(() => parse('--quik')).toThrow("unknown argument '--quik'")
  })

  it('lists every part in the usage', () => {
    expect(parse('--help').help).toBe(true)
    const usage = benchUsage(PARTS)
    for (const p of PARTS) expect(usage).toContain(`${p.name}`.padEnd(7) + '  ' + p.description)
  })
})
