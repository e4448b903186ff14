import { isValidDid } from '@atproto/syntax'
import { InvalidRequestError, PayloadTooLargeError } from '../../errors.ts'
import type { Ctx } from '../util.ts'

/** Large enough for an import batch of 1000 rows with long names. */
export const MAX_ADMIN_BODY_BYTES = 4 * 1024 * 1024

/** The JSON object body of an admin call, bounded in size; 400/413 otherwise. */
export const readAdminBody = async (
  c: Ctx,
  maxBytes = MAX_ADMIN_BODY_BYTES,
): Promise<Record<string, unknown>> => {
  if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) {
    throw new InvalidRequestError('body must be application/json')
  }
  const tooLarge = () =>
    new PayloadTooLargeError(`body is larger than ${maxBytes} bytes`)
  if (Number(c.req.header('content-length') ?? 0) > maxBytes) throw tooLarge()
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of c.req.raw.body ?? []) {
    size += chunk.byteLength
    if (size > maxBytes) throw tooLarge()
    chunks.push(chunk)
  }
  let value: unknown
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new InvalidRequestError('body is not valid JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRequestError('body must be a JSON object')
  }
  return value as Record<string, unknown>
}

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
