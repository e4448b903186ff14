import { crewRecordProblem } from '../../../../auth/crew.ts'
import { crewRecordKey, memberProblem } from '../../../../auth/crew-rules.ts'
import { ForbiddenError, InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import type { Register } from '../../../util.ts'
import { atprotoProcedure } from '../../../xrpc.ts'
import { commitView, crewWriteRequest } from './util.ts'

/**
 * Adds (or replaces) a crew member. Only io.atcr.hold.crew is writable through the API, by the
 * owner or a crew:admin member; the hold writes every other collection itself.
 */
export const register: Register = (app, ctx) => {
  atprotoProcedure(app, ids.RepoCreateRecord, async (c) => {
    const { caller, input } = await crewWriteRequest(
      ctx,
      c,
      ids.RepoCreateRecord,
    )
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
    const member = value.member as string
    const problem =
      (await crewRecordProblem(ctx.lexicons, value)) ?? memberProblem(member)
    if (problem) throw new InvalidRequestError(problem)
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
