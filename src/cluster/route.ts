import type { IncomingMessage, Server } from 'node:http'
import { connect as tcpConnect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import type { MiddlewareHandler } from 'hono'
import { BLOB_URL_PATH, PART_URL_PATH } from '../blobs/signed-url.ts'
import type { AppContext } from '../context.ts'
import { ids } from '../ids.ts'

/**
 * What a frontend answers itself: blobs, the upload procedures and URLs (object storage), the
 * stats queries (Redis), its health and metrics. Every other path reads or writes the repo and
 * is the writer's.
 */
const FRONTEND_PATHS = new Set<string>([
  `/xrpc/${ids.SyncGetBlob}`,
  `/xrpc/${ids.HoldGetStats}`,
  `/xrpc/${ids.HoldListStats}`,
  `/xrpc/${ids.HoldInitiateUpload}`,
  `/xrpc/${ids.HoldGetPartUploadUrl}`,
  `/xrpc/${ids.HoldUploadPart}`,
  `/xrpc/${ids.HoldCompleteUpload}`,
  `/xrpc/${ids.HoldAbortUpload}`,
  '/xrpc/_health',
  '/metrics',
])

export const servedByFrontend = (path: string): boolean =>
  FRONTEND_PATHS.has(path) ||
  path.startsWith(BLOB_URL_PATH) ||
  path.startsWith(PART_URL_PATH)

/** Request headers not passed on by the proxy (hop-by-hop, or set by fetch itself). */
const HOP_HEADERS = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'te',
  'trailer',
]

/**
 * HOLD_ROLE=frontend: sends what is not served here to the writer. On Fly the answer is an
 * empty response with `fly-replay: instance=<the writer's machine>`, and Fly's proxy replays
 * the request there; elsewhere the request is proxied to HOLD_WRITER_URL, its body streamed.
 */
export const toWriter = (ctx: AppContext): MiddlewareHandler => {
  const cluster = ctx.cluster!
  const writer = cluster.cfg.writer!
  const log = ctx.log.http
  return async (c, next) => {
    if (servedByFrontend(c.req.path)) return next()
    if (writer.via === 'fly-replay') {
      const machine = cluster.writerMachineId
      // A replayed request that lands here again would loop.
      if (!machine || c.req.header('fly-replay-src')) {
        return c.json(
          {
            error: 'WriterUnavailable',
            message:
              'the hold writer has not announced its machine in Redis; try again shortly',
          },
          503,
          { 'retry-after': '1' },
        )
      }
      return c.body(null, 204, { 'fly-replay': `instance=${machine}` })
    }
    const url = new URL(c.req.url)
    const target = `${writer.url}${url.pathname}${url.search}`
    const headers = new Headers(c.req.raw.headers)
    for (const h of HOP_HEADERS) headers.delete(h)
    const hasBody = c.req.method !== 'GET' && c.req.method !== 'HEAD'
    let res: Response
    try {
      res = await fetch(target, {
        method: c.req.method,
        headers,
        body: hasBody ? c.req.raw.body : undefined,
        redirect: 'manual',
        signal: c.req.raw.signal,
        ...(hasBody ? { duplex: 'half' } : {}),
      } as RequestInit)
    } catch (err) {
      log.warn({ err, path: c.req.path }, 'the hold writer cannot be reached')
      return c.json(
        {
          error: 'WriterUnavailable',
          message: 'the hold writer (HOLD_WRITER_URL) cannot be reached now',
        },
        503,
        { 'retry-after': '1' },
      )
    }
    const out = new Headers(res.headers)
    out.delete('transfer-encoding')
    out.delete('connection')
    // fetch has decoded the body: its length and encoding are no longer what they said.
    if (out.has('content-encoding')) {
      out.delete('content-encoding')
      out.delete('content-length')
    }
    return new Response(res.body, { status: res.status, headers: out })
  }
}

/**
 * HOLD_ROLE=frontend behind HOLD_WRITER_URL: an upgrade (subscribeRepos' WebSocket) is piped
 * to the writer as it came, both ways. (On Fly, fly-replay moves it before it upgrades.)
 */
export const proxyUpgrades = (server: Server, writerUrl: string): void => {
  const url = new URL(writerUrl)
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const upstream: Socket =
      url.protocol === 'https:'
        ? tlsConnect({ host: url.hostname, port, servername: url.hostname })
        : tcpConnect({ host: url.hostname, port })
    const lines = [`${req.method} ${req.url} HTTP/1.1`]
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]
      lines.push(
        name.toLowerCase() === 'host'
          ? `Host: ${url.host}`
          : `${name}: ${req.rawHeaders[i + 1]}`,
      )
    }
    upstream.once(
      url.protocol === 'https:' ? 'secureConnect' : 'connect',
      () => {
        upstream.write(lines.join('\r\n') + '\r\n\r\n')
        if (head.length > 0) upstream.write(head)
        upstream.pipe(socket)
        socket.pipe(upstream)
      },
    )
    const close = () => {
      upstream.destroy()
      socket.destroy()
    }
    upstream.on('error', close)
    socket.on('error', close)
    upstream.on('close', close)
    socket.on('close', close)
  })
}
