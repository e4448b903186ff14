// com.atproto.sync.getBlob as the hold serves it: Bluesky's NSID and parameters plus the
// hold's extension, io.atcr.hold.defs#getBlobExtension (no document with a foreign NSID is
// shipped, so the method is composed here from the generated definitions).
import { l } from '@atproto/lex-schema'
import { io } from '../generated/lexicons/index.ts'

type Ext = Omit<io.atcr.hold.defs.GetBlobExtension, '$type'>

const params = l.params({
  did: l.string({ format: 'did' }),
  cid: l.string({ maxLength: 128 }),
  method: l.optional(l.string<{ knownValues: ['GET', 'HEAD', 'PUT'] }>()),
  repo: l.optional(l.string({ maxLength: 256, maxGraphemes: 256 })),
})

// Fails to compile when the extension's names or types drift from the lexicon.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const extMatches: Same<
  Pick<l.InferOutput<typeof params>, keyof Ext>,
  Ext
> = true
void extMatches

const errors = ['BlobNotFound', 'RepoNotFound', 'InvalidRequest'] as const

export const GET_BLOB = 'com.atproto.sync.getBlob'

/** getBlob without `method`: the blob's bytes. */
export const getBlobBytes = l.query(GET_BLOB, params, l.payload('*/*'), errors)

/** getBlob with `method`: a URL signed by the hold. */
export const getBlobUrl = l.query(
  GET_BLOB,
  params,
  l.payload('application/json', io.atcr.hold.defs.blobUrl),
  errors,
)
