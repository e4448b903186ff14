import type { BlobStore } from '../blobs/store.ts'
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
    const storeDown = await pingWithin(ctx.blobs, PING_TIMEOUT_MS)
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

/** Within the platform's health-check timeout (fly.toml: 5 s), so a hung store reads as down. */
const PING_TIMEOUT_MS = 3000

/** Why the store cannot be reached now, or undefined when it answered in time. */
const pingWithin = async (
  blobs: BlobStore,
  ms: number,
): Promise<string | undefined> => {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${ms} ms`), ms)
  })
  try {
    return await Promise.race([
      blobs.ping().then(
        () => undefined,
        (err: unknown) => (err as Error).message,
      ),
      late,
    ])
  } finally {
    clearTimeout(timer)
  }
}
