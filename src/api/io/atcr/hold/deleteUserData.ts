import { crewRecordsOf } from '../../../../auth/crew.ts'
import { ids } from '../../../../lexicons.ts'
import type { Register } from '../../../util.ts'
import { atcrProcedure } from '../../../xrpc.ts'
import { userDidOf } from './user-auth.ts'

/**
 * Deletes what the hold keeps about the caller, except its io.atcr.hold.stats records: those
 * are the public counts of its image repositories, which the hold publishes; the operator
 * removes them with `atcr-hold stats reset <did>`.
 */
export const register: Register = (app, ctx) => {
  atcrProcedure(app, ctx.lexicons, ids.HoldDeleteUserData, {
    auth: (c) => userDidOf(ctx, c, ids.HoldDeleteUserData),
    handler: async (c, { auth: did }) => {
      const layersDeleted = await ctx.layers.deleteUser(did)
      const crew = crewRecordsOf(ctx.reader, did).map((r) => ({
        collection: ids.HoldCrew,
        rkey: r.rkey,
      }))
      if (crew.length > 0) await ctx.writer.deleteRecords(crew)
      let statsKept = 0
      for (let after = ''; ;) {
        const page = ctx.stats.list(did, 100, after)
        statsKept += page.stats.length
        if (page.cursor === undefined) break
        after = page.cursor
      }
      return c.json({
        success: true,
        layersDeleted,
        crewDeleted: crew.length,
        statsKept,
      })
    },
  })
}
