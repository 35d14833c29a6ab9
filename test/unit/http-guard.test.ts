/**
 * The HTTP API's guard (src/http/guard.ts): the token file's format, constant-time lookup, what a
 * read-only token may do, and which hosts count as loopback.
 */
import { describe, expect, it } from 'vitest'
import { isLoopbackHost, isOpen, parseTokenFile, readOnlyMay, roleOf, TokenFileError } from '../../src/http/guard.js'

const RW = 'rw-token-0123456789abcdef'
const RO = 'ro-token-0123456789abcdef'

describe('the HTTP guard', () => {
  it('reads a token file: roles, comments, blank lines; refuses short, duplicate, unknown-role and empty files naming the line', () => {
    const tokens = parseTokenFile(`# ops\n${RW}\n\n  ${RO} read-only  \n`)
    expect(tokens.map(t => t.role)).toEqual(['read-write', 'read-only'])
    expect(roleOf(tokens, `Bearer ${RW}`)).toBe('read-write')
    expect(roleOf(tokens, `bearer ${RO}`)).toBe('read-only')
    expect(roleOf(tokens, `Bearer ${RW}x`)).toBeUndefined()
    expect(roleOf(tokens, RW)).toBeUndefined()
    expect(roleOf(tokens, undefined)).toBeUndefined()
    expect(() => parseTokenFile('short\n')).toThrow(/line 1: a token must be at least 16 characters \(this one has 5\)/)
    expect(() => parseTokenFile(`${RW}\n${RW} read-only\n`)).toThrow(/line 2: this token is already listed/)
    expect(() => parseTokenFile(`${RW} admin\n`)).toThrow(/line 1: the role is read-only or read-write, not 'admin'/)
    expect(() => parseTokenFile(`${RW} read-only extra\n`)).toThrow(/line 1: expected/)
    expect(() => parseTokenFile('# nothing\n\n')).toThrow(TokenFileError)
    // Tokens are kept as digests, never as given.
    expect(JSON.stringify(tokens)).not.toContain(RW)
  })

  it('lets a read-only token read and query, not write, drop, take a backup or use admin endpoints', () => {
    expect(readOnlyMay('GET', '/spaces')).toBe(true)
    expect(readOnlyMay('GET', '/spaces/t/records')).toBe(true)
    expect(readOnlyMay('GET', '/metrics')).toBe(true)
    expect(readOnlyMay('POST', '/query')).toBe(true)
    expect(readOnlyMay('POST', '/query/explain')).toBe(true)
    expect(readOnlyMay('POST', '/spaces')).toBe(false)
    expect(readOnlyMay('POST', '/spaces/t/records')).toBe(false)
    expect(readOnlyMay('DELETE', '/spaces/t')).toBe(false)
    expect(readOnlyMay('GET', '/admin/faults')).toBe(false)
    expect(readOnlyMay('POST', '/admin/faults')).toBe(false)
    expect(readOnlyMay('GET', '/backup')).toBe(false)
    expect(readOnlyMay('GET', '/backup/spaces/t/partitions/0')).toBe(false)
    expect(readOnlyMay('GET', '/backups-of-nothing')).toBe(true)
    expect(isOpen('GET', '/health')).toBe(true)
    expect(isOpen('POST', '/health')).toBe(false)
    expect(isOpen('GET', '/spaces')).toBe(false)
    // The console's page and files: no data in them; the page asks for a token for the API.
    expect(isOpen('GET', '/')).toBe(true)
    expect(isOpen('HEAD', '/')).toBe(true)
    expect(isOpen('GET', '/console/console-3JQ2ZC7T.js')).toBe(true)
    expect(isOpen('POST', '/')).toBe(false)
    expect(isOpen('GET', '/console/')).toBe(false)
    expect(isOpen('GET', '/console/a/b')).toBe(false)
    expect(isOpen('GET', '/console')).toBe(false)
    expect(isOpen('GET', '/consoles/x.js')).toBe(false)
  })

  it('tells loopback hosts from the rest', () => {
    for (const h of ['127.0.0.1', '127.10.0.2', 'localhost', '::1', '[::1]']) expect(isLoopbackHost(h), h).toBe(true)
    for (const h of ['0.0.0.0', '10.0.0.1', '::', '192.168.1.1', 'example.com', '128.0.0.1']) expect(isLoopbackHost(h), h).toBe(false)
  })
})
