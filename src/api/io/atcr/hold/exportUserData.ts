import { crewRecordsOf } from '../../../../auth/crew.ts'
import { ids } from '../../../../lexicons.ts'
import { statsRecordKey } from '../../../../stats/rkey.ts'
import type { StatsView } from '../../../../stats/service.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'
import { userDidOf } from './user-auth.ts'

export const register: Register = (app, ctx) => {
  atcrQuery(app, ctx.lexicons, ids.HoldExportUserData, async (c) => {
    const did = await userDidOf(ctx, c, ids.HoldExportUserData)
    const view = (collection: string, rkey: string) => {
      const rec = ctx.reader.get(collection, rkey)
      return rec
        ? {
            uri: `at://${ctx.cfg.did}/${collection}/${rkey}`,
            cid: rec.cid,
            value: rec.value,
          }
        : undefined
    }
    const stats: StatsView[] = []
    for (let after = ''; ;) {
      const page = ctx.stats.list(did, 100, after)
      stats.push(...page.stats)
      if (page.cursor === undefined) break
      after = page.cursor
    }
    const records = [
      ...crewRecordsOf(ctx.reader, did).map((r) => view(ids.HoldCrew, r.rkey)),
      ...ctx.layers.rowsOf(did).map((r) => view(ids.HoldLayer, r.rkey)),
      ...stats.map((s) =>
        view(ids.HoldStats, statsRecordKey(did, s.repository)),
      ),
    ].filter((r) => r !== undefined)
    return c.json({
      did,
      exportedAt: new Date().toISOString(),
      records,
      stats,
      quota: ctx.quotas.quota(did),
      manifestBlobs: ctx.layerIndex.manifestBlobs(did),
    })
  })
}
