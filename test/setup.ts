// Imported before every test file: libp2p's dependencies need Promise.withResolvers on Node 20.
import '../src/polyfill/index.js'
