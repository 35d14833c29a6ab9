/**
 * The version of this build: package.json's `version`, found by walking up from this module (the
 * same file serves `src/` under tsx and vitest and `dist/src/` when compiled). Read once, at load.
 */
import { readFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
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

/**
 * What runs: the one-file bundle bin/shoal prefers (dist/bundle/, scripts/bundle.ts), where every
 * module's import.meta.url is the bundle's, or the modules one by one (dist/src/, or src/ under vitest).
 */
export const PROGRAM: 'bundle' | 'modules' = basename(dirname(fileURLToPath(import.meta.url))) === 'bundle' ? 'bundle' : 'modules'
