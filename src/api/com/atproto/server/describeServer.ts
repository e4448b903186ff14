import type { Register } from '../../../util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/com.atproto.server.describeServer', (c) =>
    c.json({
      did: ctx.cfg.did,
      availableUserDomains: [],
      inviteCodeRequired: true,
      phoneVerificationRequired: false,
    }),
  )
}
