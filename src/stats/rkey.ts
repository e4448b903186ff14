import { InvalidRequestError } from '../errors.ts'

export const MAX_RKEY_LENGTH = 512
export const MAX_REPOSITORY_LENGTH = 256

// OCI distribution spec, name grammar: path components of lowercase alphanumerics joined by
// '.', '_', '__' or runs of '-', separated by '/'.
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*'
const REPOSITORY_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`)

export const isValidRepository = (name: string): boolean =>
  name.length <= MAX_REPOSITORY_LENGTH && REPOSITORY_RE.test(name)

/**
 * The record key of a (DID, repository) pair: base64url without padding of `did:repository`.
 * Standard base64 would put '+', '/' and '=' in keys, none of which a record key may contain.
 */
export const statsRecordKey = (did: string, repository: string): string =>
  Buffer.from(`${did}:${repository}`, 'utf8').toString('base64url')

/**
 * Why a stats record may not be stored under `rkey`, or undefined: each is kept under its own
 * pair's key, so no two have the same content (what lets the record index leave them out of
 * its shared-block lookups).
 */
export const statsKeyProblem = (
  rkey: string,
  record: { did?: unknown; repository?: unknown },
): string | undefined => {
  const { did, repository } = record
  if (typeof did !== 'string' || typeof repository !== 'string') {
    return 'a stats record needs its did and repository'
  }
  const own = statsRecordKey(did, repository)
  return own === rkey
    ? undefined
    : `a stats record is kept under its own pair's key (${own}), not ${rkey}`
}

/** The length of statsRecordKey(did, repository), without building it (the getBlob hot path). */
export const statsRecordKeyLength = (did: string, repository: string): number =>
  Math.ceil(
    ((Buffer.byteLength(did) + 1 + Buffer.byteLength(repository)) * 4) / 3,
  )

/** The inverse of statsRecordKey; the DID is everything before the last ':'. */
export const parseStatsRecordKey = (
  rkey: string,
): { did: string; repository: string } => {
  const text = Buffer.from(rkey, 'base64url').toString('utf8')
  const sep = text.lastIndexOf(':')
  return { did: text.slice(0, sep), repository: text.slice(sep + 1) }
}

/**
 * Validates an optional `repo` parameter (empty means absent) for a DID whose syntax is already
 * checked, including that the pair's record key fits.
 */
export const parseRepoParam = (
  did: string,
  repo: string | undefined,
): string | undefined =>
  repo === undefined || repo === '' ? undefined : checkRepoParam(did, repo)

/** Validates a `repo` parameter that is given, as parseRepoParam does. */
export const checkRepoParam = (did: string, repo: string): string => {
  if (repo.length > MAX_REPOSITORY_LENGTH) {
    throw new InvalidRequestError(
      `repo is longer than ${MAX_REPOSITORY_LENGTH} characters`,
    )
  }
  if (!REPOSITORY_RE.test(repo)) {
    throw new InvalidRequestError(
      'repo must be an OCI repository name: lowercase letters, digits and . _ - separators, path components joined by /',
    )
  }
  if (statsRecordKeyLength(did, repo) > MAX_RKEY_LENGTH) {
    throw new InvalidRequestError(
      `did and repo together are too long: their stats record key would exceed ${MAX_RKEY_LENGTH} characters`,
    )
  }
  return repo
}
