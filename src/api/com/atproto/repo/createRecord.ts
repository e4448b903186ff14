import { cidForLex } from '@atproto/lex-cbor'
import { ForbiddenError, InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { crewRecordKey } from '../../../../repo/bootstrap.ts'
import type { Register } from '../../../util.ts'
import { commitView, crewWriteRequest } from './util.ts'

const NSID = 'com.atproto.repo.createRecord'

/**
 * Adds (or replaces) a crew member. Only io.atcr.hold.crew is writable through the API, by the
 * owner or a crew:admin member; the hold writes every other collection itself.
 */
export const register: Register = (app, ctx) => {
  app.post(`/xrpc/${NSID}`, async (c) => {
    const { caller, input } = await crewWriteRequest(ctx, c, NSID)
    const record = input.record
    if (
      typeof record !== 'object' ||
      record === null ||
      Array.isArray(record)
    ) {
      throw new InvalidRequestError('record must be an object')
    }
    const value: Record<string, unknown> = {
      ...(record as Record<string, unknown>),
      $type: ids.HoldCrew,
    }
    try {
      ctx.lexicons.assertValidRecord(ids.HoldCrew, value)
      // Valid JSON is not always AT data (floats, unsafe integers): refuse what cannot be
      // encoded as a record here, not as a 500 from the writer.
      await cidForLex(value as never)
    } catch (err) {
      throw new InvalidRequestError(
        `record is not a valid ${ids.HoldCrew}: ${(err as Error).message}`,
      )
    }
    const member = value.member as string
    const rkey = crewRecordKey(member)
    if (input.rkey !== undefined && input.rkey !== rkey) {
      throw new InvalidRequestError(
        `crew records are keyed by the member's DID: rkey must be ${rkey}`,
      )
    }
    if (member === ctx.crew.captain.owner && caller.did !== member) {
      throw new ForbiddenError(
        "only the owner may change the owner's crew record",
      )
    }
    await ctx.writer.putRecords([
      { collection: ids.HoldCrew, rkey, record: value as never },
    ])
    const stored = ctx.reader.get(ids.HoldCrew, rkey)
    return c.json({
      uri: `at://${ctx.cfg.did}/${ids.HoldCrew}/${rkey}`,
      cid: stored?.cid,
      commit: commitView(ctx),
      validationStatus: 'valid',
    })
  })
}
