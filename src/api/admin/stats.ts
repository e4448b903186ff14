import { InvalidRequestError } from '../../errors.ts'
import { checkBaseline, type Baseline } from '../../stats/baseline.ts'
import { parseRepoParam } from '../../stats/rkey.ts'
import { Params, type Register } from '../util.ts'
import { bodyDid, readAdminBody } from './util.ts'

/** Most baselines one import call may carry (the CLI sends 500). */
export const MAX_BASELINES_PER_CALL = 1000

export const register: Register = (app, ctx) => {
  const log = ctx.log.admin
  app.get('/admin/stats/top', (c) => {
    const limit = new Params(c).int('limit', { min: 1, max: 1000, def: 20 })
    return c.json({ stats: ctx.stats.top(limit) })
  })

  // Sets the baselines of the pairs given. Every row is checked first: one bad row refuses the
  // whole call, so a call is applied entirely or not at all.
  app.post('/admin/stats/import', async (c) => {
    const body = await readAdminBody(c)
    const rows = body.baselines
    if (!Array.isArray(rows)) {
      throw new InvalidRequestError('baselines must be an array')
    }
    if (rows.length > MAX_BASELINES_PER_CALL) {
      throw new InvalidRequestError(
        `at most ${MAX_BASELINES_PER_CALL} baselines per call, got ${rows.length}`,
      )
    }
    const baselines: Baseline[] = []
    const seen = new Map<string, number>()
    rows.forEach((row: unknown, i) => {
      if (typeof row !== 'object' || row === null || Array.isArray(row)) {
        throw new InvalidRequestError(`baselines[${i}] must be an object`)
      }
      const r = row as Record<string, unknown>
      const check = checkBaseline({
        did: r.did,
        repository: r.repository,
        pullCount: r.pullCount,
        pushCount: r.pushCount,
        lastPull: r.lastPull,
        lastPush: r.lastPush,
      })
      if (!check.ok) {
        throw new InvalidRequestError(`baselines[${i}]: ${check.reason}`)
      }
      const key = `${check.baseline.did} ${check.baseline.repository}`
      const first = seen.get(key)
      if (first !== undefined) {
        throw new InvalidRequestError(
          `baselines[${i}] names the same did and repository as baselines[${first}]`,
        )
      }
      seen.set(key, i)
      baselines.push(check.baseline)
    })
    const result = ctx.stats.importBaselines(baselines)
    return c.json({ received: baselines.length, ...result })
  })

  app.post('/admin/stats/reset', async (c) => {
    const body = await readAdminBody(c)
    const did = bodyDid(body, 'did')
    const raw = body.repository
    if (raw !== undefined && raw !== null && typeof raw !== 'string') {
      throw new InvalidRequestError('repository must be a string')
    }
    const repository = parseRepoParam(did, raw ?? undefined)
    const result = await ctx.stats.reset(did, repository)
    log.info({ did, repository, ...result }, 'admin: reset stats')
    return c.json({ did, repository, ...result })
  })
}
