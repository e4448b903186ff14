import { assertOwnRepo, Params, type Register } from '../../../util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/com.atproto.sync.getLatestCommit', (c) => {
    assertOwnRepo(ctx, new Params(c).required('did'), { allowHandle: false })
    const root = ctx.storage.getRootSync()
    if (!root) throw new Error('repo has no root')
    return c.json({ cid: root.cid.toString(), rev: root.rev })
  })
}
