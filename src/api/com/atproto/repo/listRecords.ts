import { lexToJson } from '@atproto/lex-json'
import { isValidRecordKey } from '@atproto/syntax'
import { InvalidRequestError } from '../../../../errors.ts'
import { assertOwnRepo, Params, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.RepoListRecords, (c) => {
    const params = new Params(c)
    assertOwnRepo(ctx, params.required('repo'), { allowHandle: true })
    const collection = params.nsid('collection')
    const limit = params.int('limit', { min: 1, max: 100, def: 50 })
    const cursor = params.string('cursor', { maxLength: 512 }) || undefined
    const reverse = params.bool('reverse', false)
    if (cursor !== undefined && !isValidRecordKey(cursor)) {
      throw new InvalidRequestError('cursor is not one this hold issued')
    }
    const records = ctx.reader.list(collection, { limit, cursor, reverse })
    return c.json({
      records: records.map((r) => ({
        uri: `at://${ctx.cfg.did}/${collection}/${r.rkey}`,
        cid: r.cid,
        value: lexToJson(r.value),
      })),
      cursor:
        records.length === limit ? records[records.length - 1].rkey : undefined,
    })
  })
}
