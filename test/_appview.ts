import { ids } from '../src/ids.ts'
import { createHash, randomBytes } from 'node:crypto'
import { Lexicons, type LexiconDoc } from '@atproto/lexicon'
import { cborToLexRecord, readCarWithRoot, verifyRepo } from '@atproto/repo'
import { bearer, identity } from './_identity.ts'
import {
  atprotoKeyFromDidDoc,
  getBytes,
  holdInfo,
  pushBlob,
  xrpc,
  type XrpcResult,
} from './_util.ts'

// What an AppView does to a hold after a push, and ATCR's published schemas to check the hold's
// records against (../shared/reference/atcr-published-lexicons.md).

/** ATCR's published io.atcr.hold.layer (its newest version: `manifest` required). */
export const PUBLISHED_LAYER: LexiconDoc = {
  lexicon: 1,
  id: 'io.atcr.hold.layer',
  defs: {
    main: {
      type: 'record',
      key: 'tid',
      record: {
        type: 'object',
        required: [
          'digest',
          'size',
          'mediaType',
          'manifest',
          'userDid',
          'createdAt',
        ],
        properties: {
          digest: { type: 'string', maxLength: 128 },
          size: { type: 'integer' },
          mediaType: { type: 'string', maxLength: 128 },
          manifest: { type: 'string', format: 'at-uri' },
          userDid: { type: 'string', format: 'did' },
          createdAt: { type: 'string', format: 'datetime' },
        },
      },
    },
  },
}

/** ATCR's published io.atcr.hold.stats. */
export const PUBLISHED_STATS: LexiconDoc = {
  lexicon: 1,
  id: 'io.atcr.hold.stats',
  defs: {
    main: {
      type: 'record',
      key: 'any',
      record: {
        type: 'object',
        required: [
          'ownerDid',
          'repository',
          'pullCount',
          'pushCount',
          'updatedAt',
        ],
        properties: {
          ownerDid: { type: 'string', format: 'did' },
          repository: { type: 'string', maxLength: 256 },
          pullCount: { type: 'integer', minimum: 0 },
          pushCount: { type: 'integer', minimum: 0 },
          lastPull: { type: 'string', format: 'datetime' },
          lastPush: { type: 'string', format: 'datetime' },
          updatedAt: { type: 'string', format: 'datetime' },
        },
      },
    },
  },
}

export const published = new Lexicons([PUBLISHED_LAYER, PUBLISHED_STATS])

export const NOTIFY = ids.HoldNotifyManifest
export const LAYER = ids.HoldLayer

export type Layer = { digest: string; size: number; mediaType: string }

export const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json'

export const digestOf = (bytes: Uint8Array): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** Random bytes as a layer (not stored anywhere). */
export const fakeLayer = (size = 64): { bytes: Uint8Array; layer: Layer } => {
  const bytes = new Uint8Array(randomBytes(size))
  return {
    bytes,
    layer: { digest: digestOf(bytes), size, mediaType: LAYER_TYPE },
  }
}

/** Stores `count` random layers on the hold as `as` (the owner by default). */
export const pushLayers = async (
  base: string,
  count: number,
  opts: { as?: string; did?: string; repo?: string; size?: number } = {},
): Promise<Layer[]> => {
  const layers: Layer[] = []
  for (let i = 0; i < count; i++) {
    const { bytes, layer } = fakeLayer(opts.size)
    const res = await pushBlob(base, bytes, opts)
    if (res.status !== 201) throw new Error(`push: ${res.status}`)
    layers.push(layer)
  }
  return layers
}

/** A manifest's notifyManifest body, for `userDid`. */
export const manifestBody = (
  userDid: string,
  layers: Layer[],
  opts: {
    repository?: string
    operation?: string
    config?: Layer
    visibility?: string
    manifestDigest?: string
  } = {},
): Record<string, unknown> => ({
  repository: opts.repository ?? 'app',
  userDid,
  manifestDigest:
    opts.manifestDigest ??
    digestOf(new TextEncoder().encode(JSON.stringify(layers))),
  tag: 'latest',
  ...(opts.operation ? { operation: opts.operation } : {}),
  manifest: {
    mediaType: MANIFEST_TYPE,
    ...(opts.config ? { config: opts.config } : {}),
    layers,
    ...(opts.visibility ? { visibility: opts.visibility } : {}),
  },
})

/** POSTs a JSON body to an XRPC procedure with a service token from `as`. */
export const callAs = async <T = Record<string, unknown>>(
  base: string,
  nsid: string,
  as: string | undefined,
  body?: unknown,
  opts: { raw?: string } = {},
): Promise<XrpcResult<T>> => {
  const { did } = await holdInfo(base)
  const headers: Record<string, string> = as
    ? await bearer({ iss: as, aud: did, lxm: nsid })
    : {}
  const payload =
    opts.raw ?? (body === undefined ? undefined : JSON.stringify(body))
  if (payload !== undefined) headers['content-type'] = 'application/json'
  return xrpc<T>(base, nsid, {}, { method: 'POST', headers, body: payload })
}

/** A GET XRPC call with a service token from `as`. */
export const queryAs = async <T = Record<string, unknown>>(
  base: string,
  nsid: string,
  as: string | undefined,
  params: Record<string, string | number | undefined> = {},
): Promise<XrpcResult<T>> => {
  const { did } = await holdInfo(base)
  const headers: Record<string, string> = as
    ? await bearer({ iss: as, aud: did, lxm: nsid })
    : {}
  return xrpc<T>(base, nsid, params, { headers })
}

/** Every record in the hold's repo, from getRepo, verified (verifyRepo) against did.json. */
export const verifiedRecords = async (
  base: string,
): Promise<
  { collection: string; rkey: string; record: Record<string, unknown> }[]
> => {
  const { did } = await holdInfo(base)
  const doc = (await (
    await fetch(`${base}/.well-known/did.json`)
  ).json()) as Parameters<typeof atprotoKeyFromDidDoc>[0]
  const res = await getBytes(base, ids.SyncGetRepo, { did })
  if (res.status !== 200) throw new Error(`getRepo: ${res.status}`)
  const car = await readCarWithRoot(res.bytes)
  const verified = await verifyRepo(
    car.blocks,
    car.root,
    did,
    atprotoKeyFromDidDoc(doc),
  )
  return verified.creates.map((c) => {
    const bytes = car.blocks.get(c.cid)
    if (!bytes) throw new Error(`record block ${c.cid.toString()} missing`)
    return {
      collection: c.collection,
      rkey: c.rkey,
      record: cborToLexRecord(bytes) as Record<string, unknown>,
    }
  })
}

/** The head commit's rev: unchanged means nothing was written. */
export const headRev = async (base: string): Promise<string> => {
  const { did } = await holdInfo(base)
  const res = await xrpc<{ rev: string }>(base, ids.SyncGetLatestCommit, {
    did,
  })
  return res.body.rev
}

/** Adds `member` to the crew with blob:read and blob:write, in `tier` when given (as the owner). */
export const addMember = async (
  base: string,
  owner: string,
  member: string,
  tier?: string,
): Promise<void> => {
  await identity(member)
  const res = await callAs(base, ids.RepoCreateRecord, owner, {
    repo: (await holdInfo(base)).did,
    collection: ids.HoldCrew,
    record: {
      $type: 'io.atcr.hold.crew',
      member,
      role: 'write',
      permissions: ['blob:read', 'blob:write'],
      addedAt: new Date().toISOString(),
      ...(tier ? { tier } : {}),
    },
  })
  if (res.status !== 200) {
    throw new Error(`createRecord: ${res.status} ${JSON.stringify(res.body)}`)
  }
}
