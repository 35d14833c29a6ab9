import { freeze } from './freeze.js'

/** Reads a space. `columns` null means every column; a list is a pushed-down projection. */
export interface ScanNode {
  readonly kind: 'Scan'
  readonly space: string
  readonly columns: readonly string[] | null
}

export function scan (space: string, columns: readonly string[] | null = null): ScanNode {
  return freeze({ kind: 'Scan', space, columns: columns === null ? null : [...columns] })
}
