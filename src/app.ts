import { Hono } from 'hono'
import { registerRoutes } from './api/index.ts'
import { observe } from './api/observe.ts'
import type { App, Ctx } from './api/util.ts'
import { blobXrpcError } from './api/blob-errors.ts'
import { BlobStoreError } from './blobs/errors.ts'
import { BLOB_URL_PATH } from './blobs/signed-url.ts'
import type { AppContext } from './context.ts'
import {
  InvalidRequestError,
  MethodNotImplementedError,
  XRPCError,
} from './errors.ts'

/** The hold's HTTP application: routes, XRPC error shapes, CORS for reads. */
export const createApp = (ctx: AppContext): App => {
  const log = ctx.logger.child({ name: 'hold:http' })
  const app: App = new Hono()
  app.use(observe(app, ctx))
  app.use('/xrpc/*', readOnlyCors)
  app.use('/.well-known/*', readOnlyCors)
  registerRoutes(app, ctx)

  const paths = new Set(app.routes.map((r) => r.path))
  app.notFound((c) => {
    const path = c.req.path
    if (paths.has(path) || path.startsWith(BLOB_URL_PATH)) {
      return xrpcError(
        c,
        new InvalidRequestError(`${c.req.method} is not allowed on ${path}`),
      )
    }
    if (path.startsWith('/xrpc/')) {
      return xrpcError(c, new MethodNotImplementedError())
    }
    return c.json({ error: 'NotFound', message: `Not found: ${path}` }, 404)
  })

  app.onError((err, c) => {
    if (err instanceof XRPCError) return xrpcError(c, err)
    if (err instanceof BlobStoreError) {
      if (err.code === 'StorageUnavailable') {
        log.warn({ err, path: c.req.path }, 'blob store unavailable')
      }
      return xrpcError(c, blobXrpcError(err))
    }
    log.error(
      { err, method: c.req.method, path: c.req.path },
      'unhandled error',
    )
    return c.json(
      { error: 'InternalServerError', message: 'Internal Server Error' },
      500,
    )
  })
  return app
}

/**
 * CORS for the read-only methods: any origin may read. The header is set before the handler
 * runs, so it lands in the response as it is built (hono/cors sets it afterwards, which makes
 * the Node adapter materialise every response: a tenth of a getBlob's cost).
 */
const readOnlyCors = async (c: Ctx, next: () => Promise<void>) => {
  if (c.req.method === 'OPTIONS') {
    return c.body(null, 204, {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, HEAD, OPTIONS',
      'access-control-allow-headers':
        c.req.header('access-control-request-headers') ?? '',
      'access-control-max-age': '86400',
    })
  }
  c.header('access-control-allow-origin', '*')
  await next()
}

const xrpcError = (c: Ctx, err: XRPCError) =>
  c.json(
    { error: err.error, message: err.message },
    err.status as 400,
    err.headers,
  )
