import type { LexMap } from '@atproto/lex-data'
import { InvalidRequestError, NotFoundError } from '../../errors.ts'
import { ids } from '../../lexicons.ts'
import { crewRecordKey } from '../../repo/bootstrap.ts'
import type { RecordReader, StoredRecord } from '../../repo/reader.ts'
import type { Register } from '../util.ts'
import { bodyDid, readAdminBody } from './util.ts'

export const CREW_PERMISSIONS = ['blob:read', 'blob:write', 'crew:admin']
const ROLE_RE = /^[a-z][a-z0-9_-]{0,63}$/

/** The role a member gets when none is given: named after the strongest permission. */
export const defaultRole = (permissions: string[]): string =>
  permissions.includes('crew:admin')
    ? 'admin'
    : permissions.includes('blob:write')
      ? 'write'
      : 'read'

/**
 * Every crew record naming `did`, whatever its key: records written by other tools (an AppView
 * calling createRecord) may not use the member's DID as key. Crews are small, so a scan is fine.
 */
export const crewRecordsOf = (
  reader: RecordReader,
  did: string,
): StoredRecord[] => {
  const found: StoredRecord[] = []
  let cursor: string | undefined
  for (;;) {
    const page = reader.list(ids.HoldCrew, {
      limit: 500,
      cursor,
      reverse: true,
    })
    for (const rec of page) if (rec.value.member === did) found.push(rec)
    if (page.length < 500) return found
    cursor = page[page.length - 1].rkey
  }
}

export const register: Register = (app, ctx) => {
  const log = ctx.logger.child({ name: 'hold:admin' })

  app.post('/admin/crew/add', async (c) => {
    const body = await readAdminBody(c)
    const did = bodyDid(body, 'did')
    const permissions = parsePermissions(body.permissions)
    const role = parseRole(body.role)
    let status: 'added' | 'updated' | 'unchanged' = 'added'
    let record: LexMap = {}
    const commit = await ctx.writer.putRecordsFrom(() => {
      const current = crewRecordsOf(ctx.reader, did)[0]
      const perms = permissions ??
        (current?.value.permissions as string[] | undefined) ?? [
          'blob:read',
          'blob:write',
        ]
      record = {
        $type: ids.HoldCrew,
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
      }
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
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidRequestError(
      `permissions must be a non-empty list of ${CREW_PERMISSIONS.join(', ')}`,
    )
  }
  for (const p of value) {
    if (typeof p !== 'string' || !CREW_PERMISSIONS.includes(p)) {
      throw new InvalidRequestError(
        `unknown permission ${JSON.stringify(p)}: known are ${CREW_PERMISSIONS.join(', ')}`,
      )
    }
  }
  return [...new Set(value as string[])]
}

const parseRole = (value: unknown): string | undefined => {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string' || !ROLE_RE.test(value)) {
    throw new InvalidRequestError(
      'role must be a short lowercase word (owner, admin, write, read, ...)',
    )
  }
  return value
}
