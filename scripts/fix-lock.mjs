#!/usr/bin/env node
// The npm registry our machines reach lacks msgpackr-extract's macOS, Windows and 32-bit ARM
// builds, so `npm install` leaves them out of package-lock.json and `npm ci` then refuses the
// lock as out of sync. They are optional and never installed on Linux x64/arm64; listing them
// (without a tarball) satisfies npm ci. Run this after any `npm install` that rewrites the lock.
import { readFileSync, writeFileSync } from 'node:fs'

const path = new URL('../package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(path, 'utf8'))
const version = lock.packages['node_modules/msgpackr-extract']?.version
if (version === undefined) process.exit(0)
const platforms = [['darwin-arm64', 'arm64', 'darwin'], ['darwin-x64', 'x64', 'darwin'], ['linux-arm', 'arm', 'linux'],
  ['linux-arm64', 'arm64', 'linux'], ['linux-x64', 'x64', 'linux'], ['win32-x64', 'x64', 'win32']]
let added = 0
for (const [name, cpu, os] of platforms) {
  const key = `node_modules/@msgpackr-extract/msgpackr-extract-${name}`
  if (lock.packages[key] !== undefined) continue
  lock.packages[key] = { version, cpu: [cpu], license: 'MIT', optional: true, os: [os] }
  added++
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => a === '' ? -1 : b === '' ? 1 : a.localeCompare(b)))
lock.packages = sorted
writeFileSync(path, JSON.stringify(lock, null, 2) + '\n')
console.log(`package-lock.json: ${added} optional msgpackr-extract platform entries added`)
