import { syncParams, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncGetLatestCommit, (c) => {
    syncParams(c, ctx)
    const root = ctx.storage.getRootSync()
    if (!root) throw new Error('repo has no root')
    return c.json({ cid: root.cid.toString(), rev: root.rev })
  })
}
