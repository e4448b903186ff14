import { InvalidRequestError } from '../../../../errors.ts'
import type { ManifestPush } from '../../../../layers/service.ts'
import { TAG_RE } from '../../../../stats/refs.ts'
import {
  isValidRepository,
  MAX_RKEY_LENGTH,
  statsRecordKeyLength,
} from '../../../../stats/rkey.ts'

type BlobInfo = { digest: string; size: number; mediaType?: string }

/** The io.atcr.hold.notifyManifest input, as its lexicon has already checked it. */
export type NotifyInput = {
  repository: string
  userDid: string
  manifestDigest: string
  operation: string
  tag?: string
  manifest: {
    mediaType: string
    config?: BlobInfo
    layers?: { digest: string; size: number; mediaType: string }[]
    manifests?: { digest: string; size: number; mediaType: string }[]
    visibility?: string
    subject?: BlobInfo
  }
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/
/** io.atcr.hold.layer allows less than the notification does. */
const MAX_LAYER_MEDIA_TYPE = 128
/** Nesting of the whole body: the lexicon's shape needs 4; extra fields get a little room. */
const MAX_DEPTH = 8

/**
 * What the lexicon cannot say about a notification: digests are sha256 digests, the repository
 * follows the OCI name grammar, layer media types fit the layer record, visibility is known, and
 * extra fields do not nest deeply. Returns the push it describes.
 */
export const checkManifest = (input: NotifyInput): ManifestPush => {
  checkDepth(input)
  const { repository, userDid, manifest } = input
  if (!isValidRepository(repository)) {
    throw new InvalidRequestError(
      'repository must be an OCI repository name: lowercase letters, digits and . _ - separators, path components joined by /',
    )
  }
  if (statsRecordKeyLength(userDid, repository) > MAX_RKEY_LENGTH) {
    throw new InvalidRequestError(
      `userDid and repository together are too long: their stats record key would exceed ${MAX_RKEY_LENGTH} characters`,
    )
  }
  checkDigest('manifestDigest', input.manifestDigest)
  if (input.tag !== undefined && !TAG_RE.test(input.tag)) {
    throw new InvalidRequestError(
      'tag must be an OCI tag: up to 128 letters, digits, _ . and -, not starting with . or -',
    )
  }
  if (manifest.config)
    checkDigest('manifest.config.digest', manifest.config.digest)
  if (manifest.subject) {
    checkDigest('manifest.subject.digest', manifest.subject.digest)
  }
  const layers = manifest.layers ?? []
  layers.forEach((layer, i) => {
    checkDigest(`manifest.layers[${i}].digest`, layer.digest)
    if (layer.mediaType.length > MAX_LAYER_MEDIA_TYPE) {
      throw new InvalidRequestError(
        `manifest.layers[${i}].mediaType is longer than ${MAX_LAYER_MEDIA_TYPE} characters`,
      )
    }
  })
  ;(manifest.manifests ?? []).forEach((child, i) =>
    checkDigest(`manifest.manifests[${i}].digest`, child.digest),
  )
  const visibility = manifest.visibility ?? 'public'
  if (visibility !== 'public' && visibility !== 'private') {
    throw new InvalidRequestError(
      'manifest.visibility must be public or private',
    )
  }
  const blobs = new Set<string>(layers.map((l) => l.digest))
  if (manifest.config) blobs.add(manifest.config.digest)
  return {
    userDid,
    repository,
    manifestDigest: input.manifestDigest,
    layers,
    blobs: [...blobs],
    private: visibility === 'private',
  }
}

const checkDigest = (name: string, value: string): void => {
  if (!DIGEST_RE.test(value)) {
    throw new InvalidRequestError(
      `${name} must be sha256: followed by 64 lowercase hex characters`,
    )
  }
}

/** Walks the body without recursion (a hostile body may nest thousands of levels). */
const checkDepth = (value: unknown): void => {
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (depth > MAX_DEPTH) {
      throw new InvalidRequestError(
        `body nests deeper than ${MAX_DEPTH} levels`,
      )
    }
    for (const child of Object.values(v)) stack.push([child, depth + 1])
  }
}
