import { assertOwnRepo, Params, type Register } from '../../../util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/com.atproto.sync.getRepoStatus', (c) => {
    assertOwnRepo(ctx, new Params(c).required('did'), { allowHandle: false })
    const root = ctx.storage.getRootSync()
    return c.json({ did: ctx.cfg.did, active: true, rev: root?.rev })
  })
}
