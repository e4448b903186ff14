import { InvalidRequestError } from '../../../../errors.ts'
import { isValidRepository } from '../../../../stats/rkey.ts'
import { Params, type Register } from '../../../util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/io.atcr.hold.listStats', (c) => {
    const params = new Params(c)
    const did = params.did('did')
    const limit = params.int('limit', { min: 1, max: 100, def: 50 })
    const cursor = params.string('cursor', { maxLength: 512 }) || undefined
    const after = cursor === undefined ? '' : decodeCursor(cursor)
    const page = ctx.stats.list(did, limit, after)
    return c.json({
      stats: page.stats,
      cursor: page.cursor === undefined ? undefined : encodeCursor(page.cursor),
    })
  })
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
