/** A JSON query is malformed; `path` names the offending part, e.g. `filter.bool.must[1].range`. */
export class JsonQueryError extends Error {
  override name = 'JsonQueryError'
  readonly code = 'invalid'
  constructor (readonly path: string, message: string) { super(`${path}: ${message}`) }
}
