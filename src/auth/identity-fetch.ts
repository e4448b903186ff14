import { lookup as dnsLookup } from 'node:dns'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import type { Transform } from 'node:stream'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'

/** Largest DID document the hold reads, counted after decompression. */
export const MAX_DID_DOC_BYTES = 64 * 1024

export type IdentityFetchOptions = {
  /** HOLD_PLC_URL: asked as given, whatever its address (mirrors and tests run on 127.0.0.1). */
  plcUrl: string
  /** HOLD_DEV_ALLOW_LOCAL_DIDS: a did:web may be on any address, and on http for localhost. */
  allowLocal: boolean
  /** For the whole exchange, from connecting to the last byte. */
  timeoutMs: number
  maxBytes?: number
}

const blocked4 = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network": a connect to 0.0.0.0 reaches the local host
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT; some clouds' metadata services live here
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, with the cloud metadata address 169.254.169.254
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  blocked4.addSubnet(net, prefix, 'ipv4')
}
// IPv6 outside 2000::/3 is loopback, unspecified, unique-local, link-local, multicast or
// reserved; inside it, these ranges are not someone's public server either.
const global6 = new BlockList()
global6.addSubnet('2000::', 3, 'ipv6')
const blocked6 = new BlockList()
for (const [net, prefix] of [
  ['2001::', 23], // protocol assignments, Teredo among them
  ['2001:db8::', 32],
  ['3fff::', 20],
] as const) {
  blocked6.addSubnet(net, prefix, 'ipv6')
}

/**
 * Whether an IP address (as Node or the WHATWG URL parser writes it) is one a DID document may
 * be fetched from: a public unicast address. An IPv6 address that carries an IPv4 address
 * (IPv4-mapped, NAT64, 6to4) is judged by the IPv4 address it reaches.
 */
export const isPublicAddress = (address: string): boolean => {
  const bare = address.replace(/^\[(.*)\]$/, '$1')
  const family = isIP(bare)
  if (family === 4) return !blocked4.check(bare, 'ipv4')
  if (family !== 6) return false
  const groups = ipv6Groups(bare)
  const v4 = embeddedIpv4(groups)
  if (v4 !== undefined) return isPublicAddress(v4)
  return global6.check(bare, 'ipv6') && !blocked6.check(bare, 'ipv6')
}

/** The eight 16-bit groups of a valid IPv6 address. */
const ipv6Groups = (address: string): number[] => {
  let text = address.split('%')[0]
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number)
    const tail = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
    text = text.slice(0, dotted.index) + tail
  }
  const [head, tail] = text.split('::')
  const front = head ? head.split(':') : []
  const back = tail ? tail.split(':') : []
  const zeros =
    tail === undefined ? [] : Array(8 - front.length - back.length).fill('0')
  return [...front, ...zeros, ...back].map((g) => parseInt(g, 16))
}

const embeddedIpv4 = (g: number[]): string | undefined => {
  const quad = (hi: number, lo: number) =>
    `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0)
  if (zeroTo(5) && g[5] === 0xffff) return quad(g[6], g[7]) // ::ffff:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0))
    return quad(g[6], g[7]) // NAT64 64:ff9b::a.b.c.d
  if (g[0] === 0x2002) return quad(g[1], g[2]) // 6to4
  return undefined
}

/**
 * A DNS lookup that fails when the name has any address that is not public. The socket then
 * connects to the addresses checked here and to no others, so a name cannot answer one address
 * to the check and another to the connect.
 */
const publicLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '')
    const refused = addresses.find((a) => !isPublicAddress(a.address))
    if (refused || addresses.length === 0) {
      const error: NodeJS.ErrnoException = new Error(
        `${hostname} resolves to ${refused?.address ?? 'nothing'}, not a public address`,
      )
      error.code = 'ENOTFOUND'
      return callback(error, '')
    }
    if (options.all) return callback(null, addresses)
    callback(null, addresses[0].address, addresses[0].family)
  })
}

/**
 * The fetch identity resolution uses, passed to @atproto/identity explicitly (its own default
 * refuses http and localhost, which tests and mirrors need). It asks the configured PLC
 * directory as given, and otherwise only a did:web's `/.well-known/did.json`: over https, at a
 * public address checked after DNS and pinned for the connect; http to localhost and private
 * addresses only with HOLD_DEV_ALLOW_LOCAL_DIDS. Every answer is read whole, within
 * `timeoutMs`, and refused past `maxBytes` as received and as decompressed; redirects are
 * never followed.
 */
export const identityFetch = (opts: IdentityFetchOptions): typeof fetch => {
  const plc = new URL(opts.plcUrl)
  const maxBytes = opts.maxBytes ?? MAX_DID_DOC_BYTES
  return async (input, init) => {
    const url = new URL(
      input instanceof Request ? input.url : (input as string | URL),
    )
    const fromPlc = url.origin === plc.origin
    if (!fromPlc) refuseUnsafe(url, opts.allowLocal)
    const signals = [AbortSignal.timeout(opts.timeoutMs)]
    if (init?.signal) signals.push(init.signal)
    return get(url, {
      accept: new Headers(init?.headers).get('accept') ?? 'application/json',
      signal: AbortSignal.any(signals),
      lookup: fromPlc || opts.allowLocal ? undefined : publicLookup,
      maxBytes,
    })
  }
}

const refuseUnsafe = (url: URL, allowLocal: boolean): void => {
  const refuse = (why: string) => {
    throw new Error(`refusing to fetch ${url.origin}: ${why}`)
  }
  // The resolver percent-decodes a did:web's host part, so %2F, %3F, %23 and %40 in an issuer
  // DID would otherwise choose the path fetched or add credentials.
  if (url.pathname !== '/.well-known/did.json' || url.search !== '') {
    refuse('only a DID document is fetched')
  }
  if (url.username !== '' || url.password !== '') refuse('credentials in URL')
  const localHttp =
    allowLocal && url.protocol === 'http:' && url.hostname === 'localhost'
  if (url.protocol !== 'https:' && !localHttp) refuse('did:web needs https')
  if (!allowLocal && isIP(url.hostname.replace(/^\[(.*)\]$/, '$1'))) {
    if (!isPublicAddress(url.hostname)) refuse('not a public address')
  }
}

const tooLarge = (maxBytes: number) =>
  new Error(`the DID document is larger than ${maxBytes} bytes`)

const get = (
  url: URL,
  o: {
    accept: string
    signal: AbortSignal
    lookup: LookupFunction | undefined
    maxBytes: number
  },
): Promise<Response> =>
  new Promise((resolve, reject) => {
    let settled = false
    let res: IncomingMessage | undefined
    let decoder: Transform | undefined
    const finish = (err: unknown, response?: Response) => {
      if (settled) return
      settled = true
      o.signal.removeEventListener('abort', onAbort)
      if (err !== undefined) {
        decoder?.destroy()
        res?.destroy()
        req.destroy()
        reject(err)
      } else {
        resolve(response!)
      }
    }
    const onAbort = () => finish(o.signal.reason ?? new Error('aborted'))
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest
    const req = request({
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port || undefined,
      path: url.pathname + url.search,
      method: 'GET',
      headers: {
        accept: o.accept,
        'accept-encoding': 'gzip, deflate, br',
        'user-agent': 'atcr-hold',
      },
      agent: false,
      lookup: o.lookup,
    })
    req.on('error', (err) => finish(err))
    if (o.signal.aborted) return onAbort()
    o.signal.addEventListener('abort', onAbort)
    req.once('response', (incoming) => {
      res = incoming
      res.on('error', (err) => finish(err))
      const status = res.statusCode ?? 0
      if (status !== 200) {
        // Redirects are answers like any other: never followed, and no body is read.
        res.destroy()
        if (status < 200 || status > 599) {
          finish(new Error(`${url.origin} answered status ${status}`))
        } else {
          finish(undefined, new Response(null, { status }))
        }
        return
      }
      if (Number(res.headers['content-length']) > o.maxBytes) {
        return finish(tooLarge(o.maxBytes))
      }
      const encoding = (res.headers['content-encoding'] ?? 'identity')
        .trim()
        .toLowerCase()
      decoder =
        encoding === 'gzip' || encoding === 'x-gzip'
          ? createGunzip()
          : encoding === 'deflate'
            ? createInflate()
            : encoding === 'br'
              ? createBrotliDecompress()
              : undefined
      if (!decoder && encoding !== 'identity') {
        return finish(new Error(`unsupported content-encoding ${encoding}`))
      }
      let received = 0
      if (decoder) {
        res.on('data', (chunk: Buffer) => {
          received += chunk.length
          if (received > o.maxBytes) finish(tooLarge(o.maxBytes))
        })
        decoder.on('error', (err) => finish(err))
      }
      const body = decoder ? res.pipe(decoder) : res
      const chunks: Buffer[] = []
      let size = 0
      body.on('data', (chunk: Buffer) => {
        if (settled) return
        size += chunk.length
        if (size > o.maxBytes) return finish(tooLarge(o.maxBytes))
        chunks.push(chunk)
      })
      body.once('end', () => {
        const type = res!.headers['content-type'] ?? 'application/json'
        finish(
          undefined,
          new Response(Buffer.concat(chunks), {
            status,
            headers: { 'content-type': type },
          }),
        )
      })
    })
    req.end()
  })
