import { ids } from '../../../../lexicons.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atcrQuery<{ userDid: string }>(
    app,
    ctx.lexicons,
    ids.HoldGetQuota,
    (c, { userDid }) => c.json(ctx.quotas.quota(userDid)),
  )
}
