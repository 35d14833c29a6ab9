#!/usr/bin/env node
// The npm registry our machines reach lacks some platform builds of optional native packages
// (msgpackr-extract's, DuckDB's bindings for other systems), so `npm install` leaves them out of
// package-lock.json and `npm ci` then refuses the lock as out of sync. They are optional and never
// installed on this platform; listing them (without a tarball) satisfies npm ci. Run this after
// any `npm install` that rewrites the lock.
import { readFileSync, writeFileSync } from 'node:fs'

const path = new URL('../package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(path, 'utf8'))
const PLATFORM = /-(darwin|linux|win32)-(x64|arm64|arm|ia32)(-musl)?$/
let added = 0
for (const pkg of Object.values(lock.packages)) {
  for (const [dep, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const depKey = `node_modules/${dep}`
    const m = PLATFORM.exec(dep)
    if (m === null || lock.packages[depKey] !== undefined) continue
    const entry = { version, cpu: [m[2]], license: pkg.license ?? 'MIT', optional: true, os: [m[1]] }
    if (m[3] !== undefined) entry.libc = ['musl']
    if (pkg.dev === true) entry.dev = true
    lock.packages[depKey] = entry
    added++
  }
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => a === '' ? -1 : b === '' ? 1 : a.localeCompare(b)))
lock.packages = sorted
writeFileSync(path, JSON.stringify(lock, null, 2) + '\n')
console.log(`package-lock.json: ${added} optional platform entries added`)
