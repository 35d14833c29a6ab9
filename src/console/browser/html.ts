/** htm bound to preact: tagged templates instead of JSX, so the console needs no JSX step. */
import { h } from 'preact'
import htm from 'htm'

export const html = htm.bind(h)

/** What a component renders. */
export type View = ReturnType<typeof html>
