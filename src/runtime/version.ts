/**
 * The version of this build: package.json's `version`, found by walking up from this module (the
 * same file serves `src/` under tsx and vitest and `dist/src/` when compiled). Read once, at load.
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findVersion (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === 'shoal' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // Not here: look one level up.
    }
    dir = dirname(dir)
  }
  return 'unknown'
}

/** This build's version (package.json), or 'unknown' if it cannot be found. */
export const VERSION: string = findVersion()
