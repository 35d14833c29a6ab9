/** The console's entry: its styles (uPlot's and ours, bundled into one CSS file) and the page. */
import 'uplot/dist/uPlot.min.css'
import './style.css'
import { h, render } from 'preact'
import { App } from './app.js'

render(h(App, null), document.getElementById('app')!)
