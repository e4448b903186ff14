import { Hono } from 'hono'
import { registerRoutes } from './api/index.ts'
import { readOnlyCors } from './api/middleware/cors.ts'
import { observe } from './api/middleware/observe.ts'
import type { App, Ctx } from './api/util.ts'
import { blobXrpcError } from './api/blob-errors.ts'
import { BlobStoreError } from './blobs/errors.ts'
import { BLOB_URL_PATH } from './blobs/signed-url.ts'
import { toWriter } from './cluster/route.ts'
import type { AppContext } from './context.ts'
import {
  InvalidRequestError,
  MethodNotImplementedError,
  XRPCError,
} from './errors.ts'

/** Installs middleware or routes on the app before the hold's own routes. */
export type Extend = (app: App, ctx: AppContext) => void

/**
 * The hold's HTTP application: routes, XRPC error shapes, CORS for reads. `extend` runs after
 * the request observer and CORS are installed and before the routes (HoldServer.create).
 */
export const createApp = (ctx: AppContext, extend?: Extend): App => {
  const log = ctx.log.http
  const app: App = new Hono()
  app.use(observe(app, ctx))
  app.use('/xrpc/*', readOnlyCors)
  app.use('/.well-known/*', readOnlyCors)
  extend?.(app, ctx)
  // HOLD_ROLE=frontend: what reads or writes the repo goes to the writer.
  if (ctx.cluster?.role === 'frontend') app.use(toWriter(ctx))
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

const xrpcError = (c: Ctx, err: XRPCError) =>
  c.json(
    { error: err.error, message: err.message },
    err.status as 400,
    err.headers,
  )
