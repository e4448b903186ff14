import type { Register } from './util.ts'

/** Prometheus text, public like the health check: it names no user data beyond public records. */
export const register: Register = (app, ctx) => {
  app.get('/metrics', async (c) => {
    const body = await ctx.metrics.text()
    return c.body(body, 200, {
      'content-type': ctx.metrics.contentType,
      'cache-control': 'no-store',
    })
  })
}
