import { assertOwnRepo, Params, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.RepoDescribeRepo, (c) => {
    assertOwnRepo(ctx, new Params(c).required('repo'), { allowHandle: true })
    return c.json({
      handle: ctx.cfg.handle,
      did: ctx.cfg.did,
      didDoc: ctx.didDoc,
      collections: ctx.reader.collections(),
      handleIsCorrect: true,
    })
  })
}
