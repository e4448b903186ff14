import type { Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.ServerDescribeServer, (c) =>
    c.json({
      did: ctx.cfg.did,
      availableUserDomains: [],
      inviteCodeRequired: true,
      phoneVerificationRequired: false,
    }),
  )
}
