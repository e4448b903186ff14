import { assertOwnRepo, Params, type Register } from '../../../util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/com.atproto.repo.describeRepo', (c) => {
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
