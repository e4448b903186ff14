import { crewRecordsOf } from '../../auth/crew.ts'
import {
  crewRecord,
  crewRecordKey,
  DEFAULT_PERMISSIONS,
  defaultRole,
  memberProblem,
  permissionsProblem,
  roleProblem,
  type CrewRecord,
} from '../../auth/crew-rules.ts'
import { InvalidRequestError, NotFoundError } from '../../errors.ts'
import { ids } from '../../lexicons.ts'
import type { Register } from '../util.ts'
import { bodyDid, readAdminBody } from './util.ts'

export const register: Register = (app, ctx) => {
  const log = ctx.log.admin

  app.post('/admin/crew/add', async (c) => {
    const body = await readAdminBody(c)
    const did = bodyDid(body, 'did')
    const tooLong = memberProblem(did)
    if (tooLong) throw new InvalidRequestError(tooLong)
    const permissions = parsePermissions(body.permissions)
    const role = parseRole(body.role)
    let status: 'added' | 'updated' | 'unchanged' = 'added'
    // Set in the writer's turn, which runs before putRecordsFrom resolves.
    let record!: CrewRecord
    const commit = await ctx.writer.putRecordsFrom(() => {
      const current = crewRecordsOf(ctx.reader, did)[0]
      const perms =
        permissions ??
        (current?.value.permissions as string[] | undefined) ??
        DEFAULT_PERMISSIONS
      record = crewRecord({
        member: did,
        role:
          role ??
          (permissions === undefined
            ? (current?.value.role as string | undefined)
            : undefined) ??
          defaultRole(perms),
        permissions: perms,
        addedAt:
          (current?.value.addedAt as string | undefined) ??
          new Date().toISOString(),
      })
      status = current ? 'updated' : 'added'
      return [
        {
          collection: ids.HoldCrew,
          rkey: current?.rkey ?? crewRecordKey(did),
          record,
        },
      ]
    })
    if (!commit) status = 'unchanged'
    else
      log.info(
        { did, role: record.role, rev: commit.rev },
        `admin: crew ${status}`,
      )
    return c.json({ status, rev: commit?.rev, member: record })
  })

  app.post('/admin/crew/remove', async (c) => {
    const body = await readAdminBody(c)
    const did = bodyDid(body, 'did')
    const owner = ctx.reader.get(ids.HoldCaptain, 'self')?.value.owner
    if (did === owner) {
      throw new InvalidRequestError(
        `${did} owns this hold (captain record): its access does not come from the crew, and its crew record comes back at the next start; change HOLD_OWNER_DID instead`,
      )
    }
    const records = crewRecordsOf(ctx.reader, did)
    if (records.length === 0) {
      throw new NotFoundError(`${did} is not in the crew`, 'RecordNotFound')
    }
    const commit = await ctx.writer.deleteRecords(
      records.map((r) => ({ collection: ids.HoldCrew, rkey: r.rkey })),
    )
    log.info({ did, rev: commit?.rev }, 'admin: crew removed')
    return c.json({
      status: 'removed',
      rev: commit?.rev,
      records: records.length,
    })
  })
}

const parsePermissions = (value: unknown): string[] | undefined => {
  if (value === undefined || value === null) return undefined
  const problem = permissionsProblem(value)
  if (problem) throw new InvalidRequestError(problem)
  return value as string[]
}

const parseRole = (value: unknown): string | undefined => {
  if (value === undefined || value === null) return undefined
  const problem = roleProblem(value)
  if (problem) throw new InvalidRequestError(problem)
  return value as string
}
