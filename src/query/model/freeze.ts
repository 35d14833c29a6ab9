/** Deep-freezes plain data (objects and arrays) so a node cannot change after it is built. */
export function freeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value as object)) freeze(v)
    Object.freeze(value)
  }
  return value
}
