/**
 * Bundles the compiled peer (dist/src/cli/main.js) and its query worker (dist/src/query/exec/
 * worker.js) into one file each under dist/bundle/, which bin/shoal runs; and the browser
 * console (src/console/browser, type-checked here first) into dist/console/, which every peer
 * serves at GET / (docs/console.md).
 *
 * Why: Node 20 loads ES modules one file at a time (resolve, stat, read, compile, link), and the
 * peer and its dependencies are about 1,080 files: `shoal --version` took 1.2-1.5 s before it
 * printed anything, every peer start and restart paid that, and so did every query worker.
 * Bundled, the same program prints it in 0.42-0.47 s (docs/benchmarks.md, "Memory and restart").
 * Nothing else changes: the same compiled code, the same dependencies, linked once at build time.
 *
 * Run by `npm run build` and `npm test` after tsc. bin/shoal runs the bundle only while it is
 * newer than tsc's output, so a `tsc` alone never leaves a stale bundle running.
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bundle.js
 */
import { build, type Metafile } from 'esbuild'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

const result = await build({
  absWorkingDir: root,
  entryPoints: {
    // pool.ts finds its worker as './worker.js' beside itself: so they sit side by side here too.
    main: 'dist/src/cli/main.js',
    worker: 'dist/src/query/exec/worker.js'
  },
  outdir: join(root, 'dist', 'bundle'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // Dependencies written as CommonJS call require(); an ES module has none, so give it Node's.
  banner: { js: "import { createRequire as shoalCreateRequire } from 'node:module'; const require = shoalCreateRequire(import.meta.url);" },
  external: [
    // Native addons find their binaries next to their own files: they stay in node_modules.
    'msgpackr-extract',
    // Required by @datadog/sketches-js only to encode sketches as protobuf, which Shoal never does.
    'protobufjs/minimal'
  ],
  // Names kept: stack traces, logs (err.name) and instanceof-free checks by constructor name read the same.
  keepNames: true,
  logLevel: 'warning',
  metafile: true
})
const outputs = Object.entries(result.metafile.outputs).map(([file, o]) => `${file} ${(o.bytes / 1048576).toFixed(1)} MiB`)
console.log(`bundled: ${outputs.join(', ')}`)

await buildConsole()

/**
 * The console: its TypeScript checked against the DOM's types (its own tsconfig: the Node build
 * leaves it out), then bundled for browsers with preact, htm and uPlot into one script and one
 * stylesheet named by their content's hash, and an index.html naming them. The peer serves the
 * page with no-cache and the hashed files as immutable (src/http/console.ts), so a browser
 * holds a build's files for good and still sees a new build at once. Nothing is fetched from
 * elsewhere at run time: the console works offline.
 */
async function buildConsole (): Promise<void> {
  const tsconfig = join(root, 'src', 'console', 'browser', 'tsconfig.json')
  const config = ts.getParsedCommandLineOfConfigFile(tsconfig, {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: d => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')) }
  })
  if (config === undefined) throw new Error(`cannot read ${tsconfig}`)
  const diagnostics = ts.getPreEmitDiagnostics(ts.createProgram(config.fileNames, config.options))
  if (diagnostics.length > 0) {
    console.error(ts.formatDiagnosticsWithColorAndContext(diagnostics, { getCanonicalFileName: f => f, getCurrentDirectory: () => root, getNewLine: () => '\n' }))
    throw new Error(`the console's TypeScript has ${diagnostics.length} errors`)
  }
  const outdir = join(root, 'dist', 'console')
  // Old builds' hashed files would pile up (and be served): start empty.
  await rm(outdir, { recursive: true, force: true })
  await mkdir(outdir, { recursive: true })
  const web = await build({
    absWorkingDir: root,
    entryPoints: { console: 'src/console/browser/main.ts' },
    outdir,
    entryNames: '[name]-[hash]',
    bundle: true,
    platform: 'browser',
    format: 'esm',
    // Browsers of the last few years (ES2020 modules, fetch, AbortSignal.timeout, ResizeObserver).
    target: ['chrome103', 'firefox115', 'safari16'],
    minify: true,
    // The bundled libraries' licence comments (MIT) kept, at the end of the script.
    legalComments: 'eof',
    logLevel: 'warning',
    metafile: true
  })
  const { js, css } = entryFiles(web.metafile, 'src/console/browser/main.ts')
  const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shoal console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/${css}">
<script type="module" src="/console/${js}"></script>
</head>
<body><div id="app"></div></body>
</html>
`
  await writeFile(join(outdir, 'index.html'), page)
  const bytes = Object.values(web.metafile.outputs).reduce((n, o) => n + o.bytes, 0)
  console.log(`console: ${js}, ${css}, index.html (${(bytes / 1024).toFixed(0)} KiB)`)
}

/** The script and stylesheet esbuild made of `entry`, by file name. */
function entryFiles (meta: Metafile, entry: string): { js: string, css: string } {
  for (const [file, out] of Object.entries(meta.outputs)) {
    if (out.entryPoint !== entry || out.cssBundle === undefined) continue
    return { js: basename(file), css: basename(out.cssBundle) }
  }
  throw new Error(`esbuild made no script with a stylesheet of ${entry}`)
}
