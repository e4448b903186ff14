import { ids } from '../../../../lexicons.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atcrQuery(app, ctx.lexicons, ids.HoldListTiers, (c) =>
    c.json({ tiers: ctx.quotas.tiers() }),
  )
}
