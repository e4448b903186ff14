import { ids } from '../../../../lexicons.ts'
import { checkRepoParam } from '../../../../stats/rkey.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atcrQuery<{ did: string; repo: string }>(
    app,
    ctx.lexicons,
    ids.HoldGetStats,
    // The lexicon bounds repo; the OCI grammar and the record key's length are the hold's own.
    async (c, { did, repo }) => {
      const repository = checkRepoParam(did, repo)
      // A frontend answers from the writer's table as published in Redis.
      const fromRedis = ctx.cluster?.frontendStats
      return c.json({
        ...(fromRedis
          ? await fromRedis.get(did, repository)
          : ctx.stats.get(did, repository)),
        countSource: ctx.cfg.countSource,
      })
    },
  )
}
