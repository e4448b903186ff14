import type { Register } from '../util.ts'
import { adminAuth } from '../middleware/admin-auth.ts'
import * as captain from './captain.ts'
import * as crew from './crew.ts'
import * as stats from './stats.ts'
import * as status from './status.ts'

/**
 * The operator API the CLI (`atcr-hold`) calls: /admin/*, HTTP Basic, off without
 * HOLD_ADMIN_PASSWORD. Every repo write goes through the single writer, like every other.
 */
export const register: Register = (app, ctx) => {
  app.use('/admin/*', adminAuth(ctx))
  status.register(app, ctx)
  stats.register(app, ctx)
  crew.register(app, ctx)
  captain.register(app, ctx)
}
