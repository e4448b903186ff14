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
    (c, { did, repo }) => c.json(ctx.stats.get(did, checkRepoParam(did, repo))),
  )
}
