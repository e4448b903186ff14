import { parseCidSafe } from '@atproto/lex-data'
import { InvalidRequestError } from '../errors.ts'

const SHA256_CODE = 0x12
const DIGEST_RE = /^sha256:([0-9a-f]{64})$/

/**
 * The sha256 of a blob named by an OCI digest (`sha256:<64 lowercase hex>`) or by a CIDv1 whose
 * multihash is sha256; both name the same blob. Returned as 64 lowercase hex characters, which
 * is all the blob store ever sees, so no input can name a path outside it.
 */
export const parseBlobId = (input: string): string => {
  if (input.length > 128) {
    throw new InvalidRequestError('cid is longer than 128 characters')
  }
  const digest = DIGEST_RE.exec(input)
  if (digest) return digest[1]
  if (input.startsWith('sha256:')) {
    throw new InvalidRequestError(
      'cid: an OCI digest must be sha256: followed by 64 lowercase hex characters',
    )
  }
  const cid = /^[a-z0-9]+$/i.test(input) ? parseCidSafe(input) : null
  if (!cid) {
    throw new InvalidRequestError(
      'cid must be an OCI digest (sha256:<hex>) or a CIDv1 with a sha256 multihash',
    )
  }
  if (cid.version !== 1) {
    throw new InvalidRequestError('cid must be a CIDv1 (CIDv0 is not accepted)')
  }
  if (
    cid.multihash.code !== SHA256_CODE ||
    cid.multihash.digest.length !== 32
  ) {
    throw new InvalidRequestError('cid must use a sha256 multihash')
  }
  return Buffer.from(cid.multihash.digest).toString('hex')
}
