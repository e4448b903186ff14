import { Params, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncListRepos, (c) => {
    const params = new Params(c)
    params.int('limit', { min: 1, max: 1000, def: 500 })
    const cursor = params.string('cursor', { maxLength: 2048 })
    const root = ctx.storage.getRootSync()
    // One repo: the cursor, when given, is past it.
    if (cursor || !root) return c.json({ repos: [] })
    return c.json({
      cursor: ctx.cfg.did,
      repos: [
        {
          did: ctx.cfg.did,
          head: root.cid.toString(),
          rev: root.rev,
          active: true,
        },
      ],
    })
  })
}
