/**
 * Bundles the compiled peer (dist/src/cli/main.js) and its query worker (dist/src/query/exec/
 * worker.js) into one file each under dist/bundle/, which bin/shoal runs.
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
import { build } from 'esbuild'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

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
