import { isValidDid } from '@atproto/syntax'
import { InvalidRequestError } from '../../errors.ts'
import { readJsonBody, type Ctx } from '../util.ts'

/** Large enough for an import batch of 1000 rows with long names. */
export const MAX_ADMIN_BODY_BYTES = 4 * 1024 * 1024

/** The JSON object body of an admin call, bounded in size; 400/413 otherwise. */
export const readAdminBody = (
  c: Ctx,
  maxBytes = MAX_ADMIN_BODY_BYTES,
): Promise<Record<string, unknown>> => readJsonBody(c, maxBytes)

export const bodyDid = (
  body: Record<string, unknown>,
  name: string,
): string => {
  const value = body[name]
  if (typeof value !== 'string' || value === '') {
    throw new InvalidRequestError(`missing required field: ${name}`)
  }
  if (!isValidDid(value)) {
    throw new InvalidRequestError(`${name} must be a DID, got "${value}"`)
  }
  return value
}

export const bodyBool = (
  body: Record<string, unknown>,
  name: string,
): boolean | undefined => {
  const value = body[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'boolean') {
    throw new InvalidRequestError(`${name} must be true or false`)
  }
  return value
}
