import { InvalidRequestError, NotFoundError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { HISTORY_MAX_DAYS } from '../../../../stats/history.ts'
import { dayOf, dayString, parseDay } from '../../../../stats/days.ts'
import { checkRepoParam } from '../../../../stats/rkey.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atcrQuery<{ did: string; repo: string; since: string; until?: string }>(
    app,
    ctx.lexicons,
    ids.HoldGetStatsHistory,
    (c, { did, repo, since, until }) => {
      const repository = checkRepoParam(did, repo)
      const first = dayParam('since', since)
      const last =
        until === undefined ? dayOf(Date.now()) : dayParam('until', until)
      if (last < first) {
        throw new InvalidRequestError(
          `until (${until}) is before since (${since})`,
        )
      }
      if (last - first + 1 > HISTORY_MAX_DAYS) {
        throw new InvalidRequestError(
          `since to until spans ${last - first + 1} days; at most ${HISTORY_MAX_DAYS} a call`,
        )
      }
      const days = ctx.stats.historyOf(did, repository, first, last)
      if (!days) throw historyNotKept()
      return c.json({
        did,
        repository,
        since: dayString(first),
        until: dayString(last),
        countSource: ctx.cfg.countSource,
        days,
      })
    },
  )
}

const dayParam = (name: string, value: string): number => {
  const day = parseDay(value)
  if (day === undefined) {
    throw new InvalidRequestError(
      `${name} must be a UTC date as YYYY-MM-DD, got "${value}"`,
    )
  }
  return day
}

/** HOLD_STATS_HISTORY_DAYS=0: the hold keeps no days to answer from. */
export const historyNotKept = () =>
  new NotFoundError(
    'this hold keeps no per-day counts (HOLD_STATS_HISTORY_DAYS=0)',
    'HistoryNotKept',
  )
