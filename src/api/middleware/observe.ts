import type { MiddlewareHandler } from 'hono'
import { BLOB_URL_PATH, PART_URL_PATH } from '../../blobs/signed-url.ts'
import type { AppContext } from '../../context.ts'
import { ids } from '../../lexicons.ts'
import { redactQuery } from '../../logger.ts'
import type { App, Ctx, Env } from '../util.ts'

const MAX_LOGGED_QUERY = 1024
const METHODS = new Set([
  'GET',
  'HEAD',
  'PUT',
  'POST',
  'DELETE',
  'OPTIONS',
  'PATCH',
])
const BLOB_ROUTE = `${BLOB_URL_PATH}:hex`
const PART_ROUTE = `${PART_URL_PATH}:uploadId/parts/:partNumber`
/** Routes whose bodies can be large streams: timed to their last byte, not to the headers. */
const STREAMED = new Set<string>([
  ids.SyncGetBlob,
  ids.SyncGetRepo,
  ids.SyncGetRecord,
  BLOB_ROUTE,
])

/**
 * One log line and one metrics sample per request. The route label is the NSID for XRPC and the
 * route pattern otherwise; paths the hold does not serve, and unusual methods, share one label
 * each, so nobody can grow the metrics by inventing URLs. Streamed bodies are measured when
 * their last byte has gone out (or the client went away); the rest when the handler answers,
 * which for a small body is the same moment and costs no listener.
 */
export const observe = (app: App, ctx: AppContext): MiddlewareHandler<Env> => {
  const log = ctx.log.http
  const metrics = ctx.metrics
  const { requests, requestDuration } = metrics
  // Label lookups are the costly part of a sample: resolve each combination once.
  const counters = new Map<string, { inc(): void }>()
  const timers = new Map<string, { observe(v: number): void }>()
  let known: Set<string> | undefined
  // Routes are registered after this middleware is installed: read them on first use.
  const routeOf = (path: string): string => {
    known ??= new Set(
      app.routes
        .map((r) => r.path)
        .filter((p) => !p.includes('*') && !p.includes(':')),
    )
    if (known.has(path)) {
      return path.startsWith('/xrpc/') ? path.slice('/xrpc/'.length) : path
    }
    if (path.startsWith(BLOB_URL_PATH)) return BLOB_ROUTE
    if (path.startsWith(PART_URL_PATH)) return PART_ROUTE
    return path.startsWith('/xrpc/') ? 'xrpc:unknown' : 'unknown'
  }

  const record = (c: Ctx, route: string, started: number, aborted: boolean) => {
    metrics.requestsInFlight--
    const ms = performance.now() - started
    const status = c.res.status
    const method = METHODS.has(c.req.method) ? c.req.method : 'other'
    const key = `${route} ${method} ${status}`
    let counter = counters.get(key)
    if (!counter) {
      counter = requests.labels(route, method, String(status))
      counters.set(key, counter)
    }
    counter.inc()
    let timer = timers.get(route)
    if (!timer) {
      timer = requestDuration.labels(route)
      timers.set(route, timer)
    }
    timer.observe(ms / 1000)

    // 501 is the answer to an unknown method: the client's mistake, not the hold's.
    const level = status >= 500 && status !== 501 ? 'warn' : 'info'
    if (!log.isLevelEnabled(level)) return
    const path = c.req.path
    const line: Record<string, unknown> = {
      method: c.req.method,
      status,
      ms: Math.round(ms * 10) / 10,
    }
    if (path.startsWith('/xrpc/')) line.nsid = path.slice('/xrpc/'.length)
    else line.path = path
    const url = c.req.url
    const q = url.indexOf('?')
    if (q !== -1) {
      line.query = redactQuery(url.slice(q + 1, q + 1 + MAX_LOGGED_QUERY))
    }
    const caller = c.get('caller')?.did
    if (caller) line.caller = caller
    if (aborted) line.aborted = true
    log[level](line, 'request')
  }

  return async (c, next) => {
    const started = performance.now()
    metrics.requestsInFlight++
    try {
      await next()
    } catch (err) {
      metrics.requestsInFlight--
      throw err
    }
    const route = routeOf(c.req.path)
    const outgoing = c.env?.outgoing
    // getBlob with `method` answers a small JSON document, not the bytes.
    const streamed =
      STREAMED.has(route) &&
      !(route === ids.SyncGetBlob && c.req.url.includes('method='))
    if (!streamed || !outgoing || outgoing.writableFinished) {
      record(c, route, started, false)
      return
    }
    // A client that left while the handler ran (an upload cut off) has closed the response
    // already, and 'close' will not come again.
    if (outgoing.closed || outgoing.destroyed) {
      record(c, route, started, true)
      return
    }
    // 'close' follows 'finish' for a complete response and comes alone when the client left.
    outgoing.once('close', () =>
      record(c, route, started, !outgoing.writableFinished),
    )
  }
}
