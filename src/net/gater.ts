/**
 * A connection gater with a runtime deny list. Partition handling and operators deny peers by id;
 * a denied peer is refused at every checkpoint libp2p offers (dial, encrypted, upgraded, both
 * directions), and denying a connected peer hangs up on it, so one side's rule cuts the link both
 * ways without the other side's cooperation.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { ConnectionGater, PeerId as Libp2pPeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../runtime/log.js'
import { silentLogger } from '../runtime/log.js'

export interface DenyList {
  /** Replaces the whole deny list and closes existing connections to newly denied peers. */
  setDenied(peerIds: string[]): Promise<void>
  /** The current deny list. */
  denied(): string[]
}

/** What the gater needs from the node to cut existing connections. */
export interface HangUpTarget {
  hangUp(peer: Libp2pPeerId): Promise<void>
}

/**
 * The gater and the deny list in one object. The deny checks are own arrow-function properties,
 * not prototype methods, because libp2p copies the gater with object spread, which drops
 * prototype methods. Everything not listed here (including private and loopback addresses) is
 * allowed, as libp2p's default gater does.
 */
export class DenyListGater implements ConnectionGater, DenyList {
  private deny = new Set<string>()
  private node: HangUpTarget | undefined
  private readonly log: Logger

  constructor (log: Logger = silentLogger) {
    this.log = log
  }

  /** Connects the deny list to the node whose connections it must close. */
  attach (node: HangUpTarget): void {
    this.node = node
  }

  readonly denyDialPeer = (peerId: Libp2pPeerId): boolean => this.deny.has(peerId.toString())
  readonly denyDialMultiaddr = (ma: Multiaddr): boolean => {
    const id = ma.getPeerId()
    return id != null && this.deny.has(id)
  }

  readonly denyInboundEncryptedConnection = (peerId: Libp2pPeerId): boolean => this.deny.has(peerId.toString())
  readonly denyOutboundEncryptedConnection = (peerId: Libp2pPeerId): boolean => this.deny.has(peerId.toString())
  readonly denyInboundUpgradedConnection = (peerId: Libp2pPeerId): boolean => this.deny.has(peerId.toString())
  readonly denyOutboundUpgradedConnection = (peerId: Libp2pPeerId): boolean => this.deny.has(peerId.toString())
  readonly denyOutboundConnection = (peerId: Libp2pPeerId): boolean => this.deny.has(peerId.toString())

  denied (): string[] {
    return [...this.deny]
  }

  isDenied (peerId: string): boolean {
    return this.deny.has(peerId)
  }

  async setDenied (peerIds: string[]): Promise<void> {
    const next = new Set(peerIds)
    const added = peerIds.filter(id => !this.deny.has(id))
    this.deny = next
    if (added.length > 0 || peerIds.length !== next.size) {
      this.log.info({ denied: [...next], added }, 'deny list updated')
    }
    const node = this.node
    if (node === undefined) return
    await Promise.all(added.map(async id => {
      let pid: Libp2pPeerId
      try {
        pid = peerIdFromString(id)
      } catch {
        // Not a libp2p id (e.g. a typo); it can never match a connection, nothing to hang up.
        return
      }
      try {
        await node.hangUp(pid)
      } catch (err) {
        this.log.warn({ peer: id, err: String(err) }, 'hang up on denied peer failed')
      }
    }))
  }
}
