import { InvalidRequestError } from '../../errors.ts'
import type { AppContext } from '../../context.ts'
import type { Register } from '../util.ts'

/** Each relay of HOLD_CRAWLERS with its last answer to requestCrawl (none yet: null). */
export const relayAnswers = (ctx: AppContext) =>
  ctx.crawlers.relayUrls.map((url) => ({
    url,
    answer: ctx.crawlers.answers.get(url) ?? null,
  }))

export const register: Register = (app, ctx) => {
  // Asks every relay now and answers once each has answered (its retries included).
  app.post('/admin/crawl', async (c) => {
    if (ctx.crawlers.relayUrls.length === 0) {
      throw new InvalidRequestError(
        'no relays to ask: set HOLD_CRAWLERS on the hold (for example https://bsky.network)',
      )
    }
    await ctx.crawlers.requestNow()
    return c.json({ relays: relayAnswers(ctx) })
  })
}
