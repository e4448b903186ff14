import { assertOwnRepo, Params, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncGetRepoStatus, (c) => {
    assertOwnRepo(ctx, new Params(c).required('did'), { allowHandle: false })
    const root = ctx.storage.getRootSync()
    return c.json({ did: ctx.cfg.did, active: true, rev: root?.rev })
  })
}
