import {
  crewRecord,
  crewRecordKey,
  DEFAULT_PERMISSIONS,
  JOIN_PERMISSIONS,
  JOIN_ROLES,
  memberProblem,
  permissionsProblem,
  roleProblem,
} from '../../../../auth/crew-rules.ts'
import {
  ForbiddenError,
  InvalidRequestError,
  RateLimitExceededError,
} from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { clientAddress } from '../../../../auth/client-address.ts'
import { serviceDid, type Register } from '../../../util.ts'
import { atcrProcedure } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atcrProcedure<string, { role: string; permissions?: string[] }>(
    app,
    ctx.lexicons,
    ids.HoldRequestCrew,
    {
      auth: (c) =>
        serviceDid(
          ctx,
          c,
          ids.HoldRequestCrew,
          'requestCrew needs a service token',
        ),
      handler: async (c, { auth: did, input }) => {
        // The lexicon gives the shape and the default role; which values a caller may ask
        // for itself is the hold's rule.
        const { role } = input
        const permissions = input.permissions ?? DEFAULT_PERMISSIONS
        const problem =
          roleProblem(role, JOIN_ROLES) ??
          permissionsProblem(permissions, JOIN_PERMISSIONS) ??
          memberProblem(did)
        if (problem) throw new InvalidRequestError(problem)
        const rkey = crewRecordKey(did)
        const uri = `at://${ctx.cfg.did}/${ids.HoldCrew}/${rkey}`
        if (did === ctx.crew.captain.owner || ctx.crew.member(did)) {
          return c.json({
            status: 'already_member',
            uri,
            cid: ctx.reader.get(ids.HoldCrew, rkey)?.cid,
          })
        }
        if (!ctx.crew.captain.allowAllCrew) {
          throw new ForbiddenError(
            'crew registration is closed on this hold (allowAllCrew is off); ask the owner',
            'RegistrationDisabled',
          )
        }
        // A join is a record and a commit: each caller, and each client address (one host
        // minting DIDs), may join only so often.
        const waitMs = ctx.crewJoins.takeAll([did, clientAddress(ctx, c)])
        if (waitMs > 0) {
          const seconds = Math.ceil(waitMs / 1000)
          throw new RateLimitExceededError(
            `too many crew joins from this caller or address (HOLD_CREW_JOINS_PER_HOUR); try again in ${seconds} s`,
            'RateLimitExceeded',
            seconds,
          )
        }
        let created = false
        await ctx.writer.putRecordsFrom(() => {
          // Checked again in the writer's turn: two concurrent requests add one record.
          if (ctx.reader.get(ids.HoldCrew, rkey)) return []
          created = true
          const record = crewRecord({
            member: did,
            role,
            permissions,
            addedAt: new Date().toISOString(),
          })
          return [{ collection: ids.HoldCrew, rkey, record }]
        })
        return c.json({
          status: created ? 'created' : 'already_member',
          uri,
          cid: ctx.reader.get(ids.HoldCrew, rkey)?.cid,
        })
      },
    },
  )
}
