import { expect, it } from 'vitest'
import { io } from '../src/generated/lexicons/index.ts'
import { getBlobBytes, getBlobUrl } from '../src/client/get-blob.ts'

// The client composes getBlob (Bluesky's NSID) by hand; its extension parameters must be the
// validators generated for io.atcr.hold.defs#getBlobExtension, limits included.
it('the client’s getBlob parameters are the lexicon’s getBlobExtension', () => {
  const def = io.atcr.hold.defs.getBlobExtension.schema as unknown as {
    shape: Record<string, unknown>
  }
  expect(Object.keys(def.shape).sort()).toEqual(['method', 'repo'])
  for (const method of [getBlobBytes, getBlobUrl]) {
    const params = method.parameters.shape as Record<string, unknown>
    for (const [name, validator] of Object.entries(def.shape)) {
      expect(params[name], name).toStrictEqual(validator)
    }
  }
})
