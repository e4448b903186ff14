import { InvalidRequestError } from '../../errors.ts'
import { checkBaseline, type Baseline } from '../../stats/baseline.ts'
import { type ExportPosition } from '../../stats/day-export.ts'
import { parseDay } from '../../stats/days.ts'
import { isValidRepository, parseRepoParam } from '../../stats/rkey.ts'
import { historyNotKept } from '../io/atcr/hold/getStatsHistory.ts'
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

  // Every pair's days from `since` on, by pair and day, a page at a time (`stats export`).
  app.get('/admin/stats/history', (c) => {
    const params = new Params(c)
    const raw = params.required('since', { maxLength: 10 })
    const since = parseDay(raw)
    if (since === undefined) {
      throw new InvalidRequestError(
        `since must be a UTC date as YYYY-MM-DD, got "${raw}"`,
      )
    }
    const limit = params.int('limit', { min: 1, max: 5000, def: 1000 })
    const cursor = params.string('cursor', { maxLength: 1024 })
    const after = cursor === undefined ? undefined : decodeExportCursor(cursor)
    const page = ctx.stats.exportHistory(since, limit, after)
    if (!page) throw historyNotKept()
    const { rows, more } = page
    const last = rows.at(-1)
    return c.json({
      rows,
      cursor:
        more && last
          ? Buffer.from(
              `${parseDay(last.day)} ${last.did} ${last.repository}`,
            ).toString('base64url')
          : undefined,
    })
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

const decodeExportCursor = (cursor: string): ExportPosition => {
  const text = /^[A-Za-z0-9_-]+$/.test(cursor)
    ? Buffer.from(cursor, 'base64url').toString('utf8')
    : ''
  const [day, did, repository, extra] = text.split(' ')
  if (
    extra !== undefined ||
    !/^\d{1,9}$/.test(day ?? '') ||
    !did?.startsWith('did:') ||
    !repository ||
    !isValidRepository(repository)
  ) {
    throw new InvalidRequestError('cursor is not one this hold issued')
  }
  return { day: Number(day), did, repository }
}
