import { lexToJson } from '@atproto/lex-json'
import { InvalidRequestError, NotFoundError } from '../../../../errors.ts'
import { assertOwnRepo, Params, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.RepoGetRecord, (c) => {
    const params = new Params(c)
    assertOwnRepo(ctx, params.required('repo'), { allowHandle: true })
    const collection = params.nsid('collection')
    const rkey = params.rkey('rkey')
    const cid = params.string('cid', { maxLength: 128 })
    const record = ctx.reader.get(collection, rkey)
    if (!record || (cid && cid !== record.cid)) {
      if (cid && !/^[a-z0-9]+$/i.test(cid)) {
        throw new InvalidRequestError('cid must be a CID')
      }
      throw new NotFoundError(
        `Could not locate record: at://${ctx.cfg.did}/${collection}/${rkey}`,
        'RecordNotFound',
      )
    }
    return c.json({
      uri: `at://${ctx.cfg.did}/${collection}/${rkey}`,
      cid: record.cid,
      value: lexToJson(record.value),
    })
  })
}
