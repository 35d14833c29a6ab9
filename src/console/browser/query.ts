/**
 * The query box: SQL in `<form id="query">`, its rows in `<table id="result">` with coverage,
 * confidence and time above them; "Explain analyze" runs it with EXPLAIN ANALYZE and shows the
 * plan and what each peer did.
 */
import { useState } from 'preact/hooks'
import { html, type View } from './html.js'
import { ApiError, explainAnalyze, query, type Explain, type QueryAnswer } from './api.js'

/** Rows drawn: a browser table of more is slow and unreadable; the answer says how many there were. */
const MAX_SHOWN_ROWS = 1000
const EXAMPLE = 'SELECT * FROM people LIMIT 20'

type Outcome = { kind: 'rows', answer: QueryAnswer } | { kind: 'explain', explain: Explain } | { kind: 'error', error: string } | { kind: 'running' }

export function QueryBox (): View {
  const [outcome, setOutcome] = useState<Outcome | undefined>(undefined)
  const run = async (sql: string, explain: boolean): Promise<void> => {
    setOutcome({ kind: 'running' })
    try {
      setOutcome(explain ? { kind: 'explain', explain: await explainAnalyze(sql) } : { kind: 'rows', answer: await query(sql) })
    } catch (err) {
      setOutcome({ kind: 'error', error: err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message })
    }
  }
  const submit = (e: Event): void => {
    e.preventDefault()
    const form = e.target as HTMLFormElement
    const sql = String(new FormData(form).get('sql') ?? '').trim()
    const explain = (e as SubmitEvent).submitter?.getAttribute('name') === 'explain'
    if (sql !== '') void run(sql, explain)
  }
  // Ctrl/Cmd+Enter runs the query, as in most SQL consoles.
  const keydown = (e: KeyboardEvent): void => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) (e.target as HTMLTextAreaElement).form?.requestSubmit()
  }
  return html`
    <form id="query" onSubmit=${submit}>
      <textarea name="sql" rows="4" spellcheck="false" placeholder=${EXAMPLE} onKeyDown=${keydown}></textarea>
      <div class="actions">
        <button type="submit" name="run">Run</button>
        <button type="submit" name="explain" class="secondary">Explain analyze</button>
        <small class="muted">Ctrl+Enter runs. Partial answers are allowed: coverage says how complete.</small>
      </div>
    </form>
    ${outcome?.kind === 'running' && html`<p class="muted">running…</p>`}
    ${outcome?.kind === 'error' && html`<p class="error" id="query-error">${outcome.error}</p>`}
    ${outcome?.kind === 'rows' && html`<${Rows} answer=${outcome.answer} />`}
    ${outcome?.kind === 'explain' && html`<${ExplainView} explain=${outcome.explain} />`}`
}

function Rows ({ answer }: { answer: QueryAnswer }): View {
  const { coverage } = answer
  const partial = coverage.answered < coverage.total
  const rows = answer.rows ?? []
  return html`
    <p class="meta" id="result-meta">
      <span class=${partial ? 'error' : ''}>coverage ${coverage.answered}/${coverage.total} partitions</span>
      ${[
        '',
        `confidence ${Number(answer.confidence.toFixed(3))}`,
        `${rows.length.toLocaleString()} rows${rows.length > MAX_SHOWN_ROWS ? ` (first ${MAX_SHOWN_ROWS} shown)` : ''}`,
        `${answer.tookMs.toFixed(1)} ms`
      ].join(' · ')}
    </p>
    ${answer.aggregations !== undefined && html`<pre>${JSON.stringify(answer.aggregations, null, 2)}</pre>`}
    <div class="scroll">
      <table id="result">
        <thead><tr>${answer.columns.map(c => html`<th title=${c.type}>${c.name}</th>`)}</tr></thead>
        <tbody>${rows.slice(0, MAX_SHOWN_ROWS).map(r => html`<tr>${answer.columns.map(c => html`<td>${cell(r[c.name])}</td>`)}</tr>`)}</tbody>
      </table>
    </div>`
}

function ExplainView ({ explain }: { explain: Explain }): View {
  const peers = explain.analyze?.peers ?? []
  return html`
    <pre id="explain-text">${explain.text}</pre>
    ${peers.length > 0 && html`
      <table id="explain">
        <thead><tr><th>Peer</th><th>Partitions</th><th>Rows scanned</th><th>Rows out</th><th>Bytes</th><th>Executing, ms</th><th>Round trip, ms</th></tr></thead>
        <tbody>${peers.map(p => html`<tr><td>${p.name ?? p.peer}</td><td>${p.partitions}</td><td>${p.rows.toLocaleString()}</td><td>${p.rowsOut.toLocaleString()}</td><td>${p.bytes.toLocaleString()}</td><td>${p.ms.toFixed(2)}</td><td>${p.roundTripMs.toFixed(2)}</td></tr>`)}</tbody>
      </table>`}`
}

function cell (v: unknown): string {
  if (v === null || v === undefined) return 'NULL'
  if (typeof v === 'object') return JSON.stringify(v)
  return String(v)
}
