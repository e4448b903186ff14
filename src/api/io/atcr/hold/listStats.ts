import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { TAG_RE } from '../../../../stats/refs.ts'
import { checkRepoParam, isValidRepository } from '../../../../stats/rkey.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'
import { refsKept } from './getStats.ts'

export const register: Register = (app, ctx) => {
  atcrQuery<{ did: string; repo?: string; limit: number; cursor?: string }>(
    app,
    ctx.lexicons,
    ids.HoldListStats,
    async (c, { did, repo, limit, cursor }) => {
      if (repo !== undefined) {
        const repository = checkRepoParam(did, repo)
        refsKept(ctx.cfg.countSource, 'repo')
        const after = cursor === undefined ? '' : decodeTagCursor(cursor)
        const stats = ctx.stats.tagStats(did, repository, limit, after)
        const last = stats.at(-1)
        return c.json({
          countSource: ctx.cfg.countSource,
          stats,
          cursor:
            stats.length === limit && last?.tag
              ? encodeCursor(last.tag)
              : undefined,
        })
      }
      const after = cursor === undefined ? '' : decodeCursor(cursor)
      const fromRedis = ctx.cluster?.frontendStats
      const page = fromRedis
        ? await fromRedis.list(did, limit, after)
        : ctx.stats.list(did, limit, after)
      return c.json({
        countSource: ctx.cfg.countSource,
        stats: page.stats,
        cursor:
          page.cursor === undefined ? undefined : encodeCursor(page.cursor),
      })
    },
  )
}

// Opaque to clients; inside, the last repository name of the page (pages are ordered by name,
// so the cursor stays valid while counts change).
const encodeCursor = (repository: string) =>
  Buffer.from(repository).toString('base64url')

const decodeCursor = (cursor: string): string => {
  const repository = /^[A-Za-z0-9_-]+$/.test(cursor)
    ? Buffer.from(cursor, 'base64url').toString('utf8')
    : ''
  if (!isValidRepository(repository)) {
    throw new InvalidRequestError('cursor is not one this hold issued')
  }
  return repository
}

const decodeTagCursor = (cursor: string): string => {
  const tag = /^[A-Za-z0-9_-]+$/.test(cursor)
    ? Buffer.from(cursor, 'base64url').toString('utf8')
    : ''
  if (!TAG_RE.test(tag)) {
    throw new InvalidRequestError('cursor is not one this hold issued')
  }
  return tag
}
