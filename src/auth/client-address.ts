import { isIP } from 'node:net'

/** HOLD_TRUSTED_PROXY_HEADER and HOLD_TRUSTED_PROXY_HOPS, as the hold's config has them. */
export type TrustedProxy = {
  cfg: { trustedProxyHeader: string | undefined; trustedProxyHops: number }
}

/** The parts of a request its client is told by (a Hono context has them). */
export type ClientRequest = {
  req: { header(name: string): string | undefined }
  env?: {
    incoming?: {
      socket?: { remoteAddress?: string }
      headers?: Record<string, string | string[] | undefined>
    }
  }
}

/**
 * The address a request came from, as a limit keys on it (`ip:<address>`): the entry of
 * HOLD_TRUSTED_PROXY_HEADER the trusted proxy wrote, when that header is configured and present,
 * else the socket's peer. Clients can write whatever they like at the left of an
 * X-Forwarded-For list; only the entries appended by proxies in front of the hold are trusted,
 * so the address is taken HOLD_TRUSTED_PROXY_HOPS entries from the right.
 */
export const clientAddress = (ctx: TrustedProxy, c: ClientRequest): string => {
  const header = ctx.cfg.trustedProxyHeader
  if (header) {
    const value = c.req.header(header)
    const address =
      value === undefined
        ? undefined
        : addressFromHeader(value, ctx.cfg.trustedProxyHops)
    if (address) return `ip:${address}`
  }
  const peer = c.env?.incoming?.socket?.remoteAddress
  if (!peer) return 'ip:unknown'
  let key = peerKeys.get(peer)
  if (key === undefined) {
    key = `ip:${normalizeAddress(peer) ?? 'unknown'}`
    // Emptied rather than evicted one by one: cheap, and bounded.
    if (peerKeys.size >= PEER_KEYS_KEPT) peerKeys.clear()
    peerKeys.set(peer, key)
  }
  return key
}

/** Socket peers seen lately and their keys: most requests come from a peer seen before. */
const peerKeys = new Map<string, string>()
const PEER_KEYS_KEPT = 10_000

/**
 * The client a per-client limit charges: the caller's DID when authenticated, else the client
 * address (from HOLD_TRUSTED_PROXY_HEADER when configured, since behind a proxy every socket is
 * the proxy's).
 */
export const clientKey = (
  ctx: TrustedProxy,
  c: ClientRequest,
  callerDid: string | undefined,
): string => callerDid || clientAddress(ctx, c)

/**
 * The client's address in a proxy header: `hops` entries from the right of a comma-separated
 * list (the leftmost when the list is shorter), or undefined when that entry is not an address.
 */
export const addressFromHeader = (
  value: string,
  hops: number,
): string | undefined => {
  const entries = value.split(',')
  const entry = entries[Math.max(0, entries.length - hops)].trim()
  return normalizeAddress(entry)
}

/**
 * An address in the form limits compare: ports and brackets dropped, IPv4-mapped IPv6 as IPv4,
 * and IPv6 reduced to its /64, since one host usually holds a whole /64 and could otherwise
 * take a fresh budget per address. Undefined when the value is not an IP address.
 */
export const normalizeAddress = (value: string): string | undefined => {
  let addr = value
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(addr)
  if (bracketed) addr = bracketed[1]
  else if (/^[\d.]+:\d+$/.test(addr)) addr = addr.slice(0, addr.indexOf(':'))
  addr = addr.split('%')[0]
  const family = isIP(addr)
  if (family === 4) return addr
  if (family !== 6) return undefined
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  if (mapped) return mapped[1]
  return `${ipv6Groups(addr).slice(0, 4).join(':')}::/64`
}

/** The eight 16-bit groups of a valid IPv6 address, in lowercase hex without leading zeros. */
const ipv6Groups = (addr: string): string[] => {
  const split = (part: string): string[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]))
  const gap = addr.indexOf('::')
  const groups =
    gap === -1
      ? split(addr)
      : (() => {
          const head = split(addr.slice(0, gap))
          const tail = split(addr.slice(gap + 2))
          return [
            ...head,
            ...Array<string>(8 - head.length - tail.length).fill('0'),
            ...tail,
          ]
        })()
  return groups.map((g) => parseInt(g, 16).toString(16))
}
