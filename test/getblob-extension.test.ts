import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids, LEXICON_DIR, loadLexiconDocs } from '../src/lexicons.ts'
import { expectXrpcError, getStats } from './_access.ts'
import {
  ownerAuth,
  pushBlob,
  removeDir,
  startHold,
  TEST_OWNER,
  xrpc,
  type TestHold,
} from './_util.ts'

const EXTENSION = `${ids.HoldDefs}#getBlobExtension`

type StringDef = {
  type: 'string'
  maxLength?: number
  maxGraphemes?: number
  knownValues?: string[]
}

// getBlob keeps its hand-written checks (it is the hot path); these hold them to the lexicon.
describe('getBlob agrees with io.atcr.hold.defs#getBlobExtension', () => {
  let h: TestHold
  let digest: string
  let ext: { properties: Record<string, StringDef>; required?: string[] }

  const getBlob = async (params: Record<string, string>) =>
    xrpc(
      h.url,
      ids.SyncGetBlob,
      { did: TEST_OWNER, cid: digest, ...params },
      { headers: await ownerAuth(h.url, { lxm: ids.SyncGetBlob }) },
    )

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
    const pushed = await pushBlob(h.url, Buffer.from('extension test blob'), {
      did: TEST_OWNER,
    })
    expect(pushed.status).toBe(201)
    digest = pushed.digest
    ext = h.hold.ctx.lexicons.getDefOrThrow(EXTENSION, [
      'object',
    ]) as unknown as typeof ext
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('describes two optional string parameters, method and repo, and getBlob answers without either', async () => {
    expect(Object.keys(ext.properties).sort()).toEqual(['method', 'repo'])
    expect(ext.required ?? []).toEqual([])
    for (const def of Object.values(ext.properties)) {
      expect(def.type).toBe('string')
    }
    const plain = await getBlob({})
    expect(plain.status).toBe(200)
    expect(plain.body).toBe('extension test blob')
  })

  it('method: getBlob signs a URL for each known value and refuses every other value with 400', async () => {
    const known = ext.properties.method.knownValues ?? []
    expect(known.length).toBeGreaterThan(0)
    for (const method of known) {
      const res = await getBlob({ method })
      expect(res.status, method).toBe(200)
      expect(res.body.method).toBe(method)
      expect(
        h.hold.ctx.lexicons.validate(`${ids.HoldDefs}#blobUrl`, res.body)
          .success,
      ).toBe(true)
    }
    for (const method of ['get', 'POST', 'DELETE', 'GETS', ' GET']) {
      expectXrpcError(await getBlob({ method }), 400, 'InvalidRequest')
    }
  })

  it('repo: getBlob counts a name as long as the lexicon allows and refuses a longer one, counting nothing', async () => {
    const { maxLength, maxGraphemes } = ext.properties.repo
    expect(maxLength).toBeDefined()
    // An OCI name is ASCII: its characters, bytes and graphemes are one count.
    expect(maxGraphemes).toBe(maxLength)
    const longest = 'a'.repeat(maxLength!)
    expect((await getBlob({ repo: longest })).status).toBe(200)
    expect((await getStats(h, TEST_OWNER, longest)).pullCount).toBe(1)

    const tooLong = `${longest}a`
    expectXrpcError(await getBlob({ repo: tooLong }), 400, 'InvalidRequest')
    expectXrpcError(
      await getBlob({ method: 'GET', repo: tooLong }),
      400,
      'InvalidRequest',
    )
    expect((await getStats(h, TEST_OWNER, longest)).pullCount).toBe(1)
  })

  it('repo: empty is absent, as the lexicon says', async () => {
    expect(ext.properties.repo.maxLength).toBeGreaterThan(0)
    const before = h.hold.ctx.stats.totals.pulls
    expect((await getBlob({ repo: '' })).status).toBe(200)
    expect(h.hold.ctx.stats.totals.pulls).toBe(before)
  })
})

describe('lexicon hygiene', () => {
  it('ships no document under a namespace that is not ours: com.atproto.sync.getBlob is Bluesky’s', () => {
    expect(existsSync(join(LEXICON_DIR, 'com'))).toBe(false)
    const docs = loadLexiconDocs()
    expect(docs.length).toBeGreaterThan(0)
    for (const doc of docs) expect(doc.id).toMatch(/^io\.atcr\./)
    const names = docs.map((doc) => doc.id)
    expect(new Set(names).size).toBe(names.length)
  })
})
