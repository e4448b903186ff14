import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { isValidDid } from '@atproto/syntax'
import type { TrendingCursor } from '../../../../stats/history.ts'
import { isValidRepository } from '../../../../stats/rkey.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'
import { historyNotKept } from './getStatsHistory.ts'

export const register: Register = (app, ctx) => {
  atcrQuery<{ days: number; limit: number; cursor?: string }>(
    app,
    ctx.lexicons,
    ids.HoldListTrending,
    async (c, { days, limit, cursor }) => {
      const after = cursor === undefined ? undefined : decodeCursor(cursor)
      const rows = await ctx.stats.trending(days, limit, after)
      if (!rows) throw historyNotKept()
      const last = rows.at(-1)
      return c.json({
        days,
        countSource: ctx.cfg.countSource,
        repositories: rows,
        cursor:
          rows.length === limit && last
            ? encodeCursor({
                pulls: last.pulls,
                did: last.did,
                repository: last.repository,
              })
            : undefined,
      })
    },
  )
}

// Opaque to clients; inside, the last row's window pulls, DID and repository (the page order).
const encodeCursor = (at: TrendingCursor) =>
  Buffer.from(`${at.pulls} ${at.did} ${at.repository}`).toString('base64url')

const decodeCursor = (cursor: string): TrendingCursor => {
  const text = /^[A-Za-z0-9_-]+$/.test(cursor)
    ? Buffer.from(cursor, 'base64url').toString('utf8')
    : ''
  const [pulls, did, repository, extra] = text.split(' ')
  if (
    extra !== undefined ||
    !/^\d{1,15}$/.test(pulls ?? '') ||
    !did ||
    !isValidDid(did) ||
    !repository ||
    !isValidRepository(repository)
  ) {
    throw new InvalidRequestError('cursor is not one this hold issued')
  }
  return { pulls: Number(pulls), did, repository }
}
