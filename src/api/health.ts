import type { Register } from './util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/_health', async (c) => {
    // Touches the database, so a broken volume shows here.
    ctx.db.db.prepare('SELECT 1').get()
    // Reads still work while writes fail (a full disk): the hold is not well, and says why.
    const failure = ctx.db.writeFailure
    if (failure) {
      return c.json({ error: 'WritesFailing', message: failure.reason }, 503)
    }
    // The blob store is reached too: an S3 outage is not a healthy hold, though counts go on.
    const storeDown = await ctx.blobs.ping().then(
      () => undefined,
      (err: unknown) => (err as Error).message,
    )
    if (storeDown) {
      return c.json(
        {
          error: 'StorageUnavailable',
          message: `the ${ctx.blobs.kind} blob store cannot be reached: ${storeDown}`,
        },
        503,
      )
    }
    return c.json({ version: ctx.cfg.version })
  })
}
