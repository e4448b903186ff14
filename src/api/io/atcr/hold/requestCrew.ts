import {
  AuthRequiredError,
  ForbiddenError,
  InvalidRequestError,
  RateLimitExceededError,
} from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { crewRecordKey } from '../../../../repo/bootstrap.ts'
import { clientAddress } from '../../../client-address.ts'
import { readJsonBody, type Register } from '../../../util.ts'

const NSID = 'io.atcr.hold.requestCrew'
const GRANTABLE = ['blob:read', 'blob:write']
const ROLES = ['member', 'write', 'read']

export const register: Register = (app, ctx) => {
  app.post(`/xrpc/${NSID}`, async (c) => {
    const caller = await ctx.access.authenticate(c.req.raw, NSID)
    c.set('caller', caller)
    const did = caller.did
    if (!did) throw new AuthRequiredError('requestCrew needs a service token')
    const length = c.req.header('content-length')
    // A chunked body has no content-length, and is still a body.
    const hasBody =
      length === undefined
        ? c.req.header('transfer-encoding') !== undefined
        : Number(length) > 0
    const input = hasBody ? await readJsonBody(c) : {}
    const role = input.role ?? 'member'
    if (typeof role !== 'string' || !ROLES.includes(role)) {
      throw new InvalidRequestError(`role must be one of ${ROLES.join(', ')}`)
    }
    const permissions = input.permissions ?? GRANTABLE
    if (
      !Array.isArray(permissions) ||
      permissions.length === 0 ||
      !permissions.every((p) => typeof p === 'string' && GRANTABLE.includes(p))
    ) {
      throw new InvalidRequestError(
        'permissions may only be blob:read and blob:write; crew:admin is granted by the owner',
      )
    }
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
      return [
        {
          collection: ids.HoldCrew,
          rkey,
          record: {
            $type: ids.HoldCrew,
            member: did,
            role,
            permissions: [...new Set(permissions as string[])],
            addedAt: new Date().toISOString(),
          },
        },
      ]
    })
    return c.json({
      status: created ? 'created' : 'already_member',
      uri,
      cid: ctx.reader.get(ids.HoldCrew, rkey)?.cid,
    })
  })
}
