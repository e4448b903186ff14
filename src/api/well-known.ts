import type { Register } from './util.ts'

export const register: Register = (app, ctx) => {
  app.get('/.well-known/did.json', (c) => c.json(ctx.didDoc))
  app.get('/.well-known/atproto-did', (c) =>
    c.text(ctx.cfg.did, 200, { 'content-type': 'text/plain; charset=utf-8' }),
  )
}
