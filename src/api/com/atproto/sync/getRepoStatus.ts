import { syncParams, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncGetRepoStatus, (c) => {
    syncParams(c, ctx)
    const root = ctx.storage.getRootSync()
    return c.json({ did: ctx.cfg.did, active: true, rev: root?.rev })
  })
}
