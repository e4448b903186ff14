import { isValidRecordKey } from '@atproto/syntax'
import { ids } from '../ids.ts'

// What a crew record may say, in one place for the hold and the CLI. Pure: nothing here opens
// the data dir or loads the server.

/** What a crew member may do, as ATCR's holds name it (io.atcr.hold.crew `permissions`). */
export const PERMISSIONS = ['blob:read', 'blob:write', 'crew:admin'] as const
export type Permission = (typeof PERMISSIONS)[number]

/** A new member's permissions when none are named (requestCrew, the admin API's crew add). */
export const DEFAULT_PERMISSIONS: readonly Permission[] = [
  'blob:read',
  'blob:write',
]

/** What requestCrew may ask for: crew:admin comes only from the owner or a crew admin. */
export const JOIN_PERMISSIONS: readonly Permission[] = [
  'blob:read',
  'blob:write',
]

/** The roles requestCrew may ask for (io.atcr.hold.requestCrew `role`). */
export const JOIN_ROLES: readonly string[] = ['member', 'write', 'read']

const ROLE_RE = /^[a-z][a-z0-9_-]{0,63}$/

export const isPermission = (value: unknown): value is Permission =>
  typeof value === 'string' &&
  (PERMISSIONS as readonly string[]).includes(value)

/**
 * Crew records are keyed by the member's DID, as ATCR's holds do, when it is a legal key, and
 * by the base64url of it otherwise (did:web with a port has a '%').
 */
export const crewRecordKey = (did: string): string =>
  isValidRecordKey(did) ? did : Buffer.from(did).toString('base64url')

/** Why `did` cannot have a crew record, or undefined: its record key must be a legal one. */
export const memberProblem = (did: string): string | undefined =>
  isValidRecordKey(crewRecordKey(did))
    ? undefined
    : `${did.slice(0, 64)}… is too long for a crew member: the key of its crew record would exceed 512 characters`

/** The role a member gets when none is given: named after the strongest permission. */
export const defaultRole = (permissions: readonly string[]): string =>
  permissions.includes('crew:admin')
    ? 'admin'
    : permissions.includes('blob:write')
      ? 'write'
      : 'read'

/** Why `value` is not a non-empty list of permissions out of `allowed`; undefined when it is. */
export const permissionsProblem = (
  value: unknown,
  allowed: readonly Permission[] = PERMISSIONS,
): string | undefined => {
  if (!Array.isArray(value) || value.length === 0) {
    return `permissions must be a non-empty list of ${allowed.join(', ')}`
  }
  for (const p of value) {
    if (!isPermission(p)) {
      return `unknown permission ${JSON.stringify(p)}: known are ${PERMISSIONS.join(', ')}`
    }
    if (!allowed.includes(p)) {
      return `permission ${p} cannot be asked for, only ${allowed.join(', ')}: ${p} is granted by the owner or a crew admin`
    }
  }
  return undefined
}

/**
 * Why `value` is not a role; undefined when it is. A role is a short lowercase word, one of
 * `allowed` when that is given.
 */
export const roleProblem = (
  value: unknown,
  allowed?: readonly string[],
): string | undefined => {
  if (allowed) {
    return typeof value === 'string' && allowed.includes(value)
      ? undefined
      : `role must be one of ${allowed.join(', ')}`
  }
  return typeof value === 'string' && ROLE_RE.test(value)
    ? undefined
    : 'role must be a short lowercase word (owner, admin, write, read, ...)'
}

export type CrewRecord = {
  $type: typeof ids.HoldCrew
  member: string
  role: string
  permissions: string[]
  addedAt: string
}

/** The io.atcr.hold.crew record the hold writes for a member (a permission named once). */
export const crewRecord = (m: {
  member: string
  role: string
  permissions: readonly string[]
  addedAt: string
}): CrewRecord => ({
  $type: ids.HoldCrew,
  member: m.member,
  role: m.role,
  permissions: [...new Set(m.permissions)],
  addedAt: m.addedAt,
})
