/**
 * Yamux window updates when half the window is spent, not after every read.
 *
 * @chainsafe/libp2p-yamux 7 sends a WINDOW_UPDATE frame each time the reader takes a chunk off a
 * stream, however little it consumed. An RPC round trip on a data stream is then four frames
 * where two carry anything: the request, an update for it, the answer, an update for that. On
 * loopback a frame is a noise message and a socket write, and it wakes the other process: for a
 * count(*) over a one-partition space a coordinator made 5 socket writes and its data peer 5
 * (strace), where the work needs one each, and on a machine whose cores are all busy every
 * wake-up is a turn waiting for the CPU (docs/benchmarks.md, "Where the time goes").
 *
 * The yamux spec leaves when to update to the receiver; hashicorp/yamux and go-yamux send one
 * once at least half the window is consumed, rust-yamux likewise (rust-yamux#100). This does the
 * same to the JS stream's own check: an update that opens or closes a stream (SYN, ACK, FIN,
 * RST flags) still goes at once, and the sender is never starved: it is waiting only with its
 * window spent, and then more than half of it has been consumed, so the update goes.
 *
 * A patch of the stream class's prototype, the one place the muxer decides; checked against the
 * installed version by test/unit/net-frames.test.ts, which counts the window updates of real
 * calls and fails when yamux renames the method or the fields read here (the check then always
 * falls through to the original).
 */
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** The fields of YamuxStream this reads (private in its types, plain properties at run time). */
interface WindowFields {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate: () => void
}

const INSTALLED = Symbol.for('shoal.yamux.halfWindowUpdates')

/** Installs the half-window rule once per process (idempotent). */
export function installHalfWindowUpdates (): void {
  const proto = YamuxStream.prototype as unknown as WindowFields & { [INSTALLED]?: true }
  if (proto[INSTALLED] === true) return
  const eager = proto.sendWindowUpdate
  if (typeof eager !== 'function') throw new Error('@chainsafe/libp2p-yamux: YamuxStream.sendWindowUpdate is missing; the half-window patch (src/net/yamux-window.ts) needs updating')
  proto.sendWindowUpdate = function (this: WindowFields): void {
    // Less than half of the window consumed on a stream past its handshake (the update would carry
    // no SYN or ACK: getSendFlags, which changes the state, is left to the original): the sender
    // has room to go on.
    const opening = this.state === StreamState.Init || this.state === StreamState.SYNReceived
    if (!opening && this.recvWindowCapacity * 2 >= this.recvWindow) return
    eager.call(this)
  }
  proto[INSTALLED] = true
}
