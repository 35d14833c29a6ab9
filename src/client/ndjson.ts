/**
 * The lines of an NDJSON body as its chunks arrive, blank ones skipped. A line is held until its
 * newline arrives, so memory holds one line and one chunk.
 */
export async function * ndjsonLines (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of chunks) {
    buffered += decoder.decode(chunk, { stream: true })
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim()
      buffered = buffered.slice(nl + 1)
      if (line !== '') yield line
    }
  }
  const rest = (buffered + decoder.decode()).trim()
  if (rest !== '') yield rest
}
