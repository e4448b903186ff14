import { ids } from '../src/ids.ts'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../src/config.ts'
import { loadTiers } from '../src/quota/tiers.ts'
import {
  addMember,
  callAs,
  fakeLayer,
  headRev,
  manifestBody,
  NOTIFY,
  pushLayers,
} from './_appview.ts'
import {
  ownerAuth,
  pushBlob,
  runHoldToExit,
  startHold,
  tempDir,
  TEST_OWNER,
  xrpc,
  type TestHold,
} from './_util.ts'

const MEMBER = 'did:plc:quotamember000000000000000'
const BIG = 'did:plc:quotabigmember0000000000000'
const OTHER = 'did:plc:quotaothertier00000000000000'

const writeTiers = async (text: string, name = 'quotas.yaml') => {
  const dir = await tempDir('atcr-quota-')
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

describe('HOLD_QUOTAS_FILE', () => {
  it('reads tiers from YAML (sizes with units, a tier as a bare size, comments) and from JSON', async () => {
    const yaml = await writeTiers(`# tiers of this hold
tiers:
  deckhand:
    quota: 5GB   # decimal
    scanOnPush: true
  bosun: 512MiB
  "quartermaster":
    quota: 1000
defaults:
  new_crew_tier: deckhand
`)
    const fromYaml = loadTiers(yaml)
    expect(fromYaml.defaultTier).toBe('deckhand')
    expect([...fromYaml.tiers.values()]).toEqual([
      { name: 'deckhand', quotaBytes: 5e9, scanOnPush: true },
      { name: 'bosun', quotaBytes: 512 * 1024 ** 2, scanOnPush: false },
      { name: 'quartermaster', quotaBytes: 1000, scanOnPush: false },
    ])
    const json = await writeTiers(
      JSON.stringify({
        tiers: { deckhand: { quota: '5GB', scanOnPush: true }, bosun: 100 },
        defaults: { new_crew_tier: 'bosun' },
      }),
      'quotas.json',
    )
    const fromJson = loadTiers(json)
    expect(fromJson.defaultTier).toBe('bosun')
    expect(fromJson.tiers.get('deckhand')?.quotaBytes).toBe(5e9)
  })

  it.each([
    ['tiers:\n  a: lots\n', /tiers\.a\.quota must be bytes/],
    [
      'tiers:\n  a: 1GB\n  b: 2GB\n',
      /defaults\.new_crew_tier must name one of/,
    ],
    [
      'tiers:\n  a: 1GB\ndefaults:\n  new_crew_tier: z\n',
      /new_crew_tier must name one of the tiers \(a\)/,
    ],
    ['tiers:\n\ta: 1GB\n', /line 2: indent with spaces/],
    ['tiers:\n  - a\n', /line 2: expected "key: value"/],
    ['tiers:\n  a: [1, 2]\n', /line 2: only plain values/],
    ['tiers:\n  a: 1GB\n  a: 2GB\n', /line 3: "a" is given twice/],
    ['tiers:\n', /"tiers" has no value/],
    ['{"tiers": ', /not valid JSON/],
    ['other: 1\n', /needs a "tiers" mapping/],
    ['tiers:\n  "bad name": 1GB\n', /tier name "bad name"/],
  ])(
    'refuses a bad file with one line naming the variable: %j',
    async (text, msg) => {
      const path = await writeTiers(text)
      let err: unknown
      try {
        loadTiers(path)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(ConfigError)
      expect((err as Error).message).toMatch(/^HOLD_QUOTAS_FILE \(/)
      expect((err as Error).message).toMatch(msg)
      expect((err as Error).message).not.toContain('\n')
    },
  )

  it('stops the hold at start when the file cannot be read, naming the variable', async () => {
    const dataDir = await tempDir()
    const { code, output } = await runHoldToExit({
      HOLD_DATA_DIR: dataDir,
      HOLD_PORT: '0',
      HOLD_QUOTAS_FILE: join(dataDir, 'missing.yaml'),
    })
    expect(code).toBe(1)
    expect(output.trim()).toMatch(
      /^atcr-hold: HOLD_QUOTAS_FILE: cannot read .*missing\.yaml \(ENOENT\)$/,
    )
  })
})

describe('quotas', () => {
  let h: TestHold

  beforeAll(async () => {
    const file = await writeTiers(`tiers:
  tiny: 200
  big: 1MB
defaults:
  new_crew_tier: tiny
`)
    h = await startHold({ env: { HOLD_QUOTAS_FILE: file } })
    await addMember(h.url, TEST_OWNER, MEMBER)
    await addMember(h.url, TEST_OWNER, BIG, 'big')
    await addMember(h.url, TEST_OWNER, OTHER, 'unknown-tier')
  })
  afterAll(() => h.stop())

  const quota = async (did: string) =>
    (await xrpc(h.url, ids.HoldGetQuota, { userDid: did })).body

  it('lists the tiers', async () => {
    const res = await xrpc(h.url, ids.HoldListTiers)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      tiers: [
        {
          name: 'tiny',
          quotaBytes: 200,
          quotaFormatted: '200 B',
          scanOnPush: false,
        },
        {
          name: 'big',
          quotaBytes: 1_000_000,
          quotaFormatted: '1 MB',
          scanOnPush: false,
        },
      ],
    })
  })

  it('gives crew the tier of their record, the default tier otherwise, and the owner no limit', async () => {
    expect(await quota(MEMBER)).toEqual({
      userDid: MEMBER,
      uniqueBlobs: 0,
      totalSize: 0,
      tier: 'tiny',
      limit: 200,
    })
    expect(await quota(BIG)).toMatchObject({ tier: 'big', limit: 1_000_000 })
    expect(await quota(OTHER)).toMatchObject({ tier: 'tiny', limit: 200 })
    const owner = await quota(TEST_OWNER)
    expect(owner).toEqual({ userDid: TEST_OWNER, uniqueBlobs: 0, totalSize: 0 })
  })

  it('accepts a push that reaches the limit exactly, counts each digest once, and refuses one byte more', async () => {
    const two = await pushLayers(h.url, 2, { as: MEMBER, size: 100 })
    const first = await callAs(
      h.url,
      NOTIFY,
      MEMBER,
      manifestBody(MEMBER, two, { repository: 'one' }),
    )
    expect(first.status).toBe(200)
    expect(first.body.layersCreated).toBe(2)
    expect(await quota(MEMBER)).toMatchObject({
      uniqueBlobs: 2,
      totalSize: 200,
      limit: 200,
    })
    // The same blobs in another manifest and repository cost nothing more.
    const again = await callAs(
      h.url,
      NOTIFY,
      MEMBER,
      manifestBody(MEMBER, [two[1], two[0]], { repository: 'two' }),
    )
    expect(again.status).toBe(200)
    expect(again.body.layersCreated).toBe(2)
    expect(await quota(MEMBER)).toMatchObject({
      uniqueBlobs: 2,
      totalSize: 200,
    })

    // One byte over: stored by the owner (unlimited), then named by the member.
    const [oneByte] = await pushLayers(h.url, 1, { size: 1 })
    const rev = await headRev(h.url)
    const over = await callAs(
      h.url,
      NOTIFY,
      MEMBER,
      manifestBody(MEMBER, [...two, oneByte], { repository: 'three' }),
    )
    expect(over.status).toBe(403)
    expect(over.body.error).toBe('QuotaExceeded')
    expect(over.body.message).toMatch(/200 bytes stored and 1 new/)
    expect(await headRev(h.url)).toBe(rev)
    expect(await quota(MEMBER)).toMatchObject({
      uniqueBlobs: 2,
      totalSize: 200,
    })
  })

  it('refuses an upload up front when its declared size cannot fit, storing nothing; a bigger tier and the owner upload', async () => {
    const { bytes } = fakeLayer(1)
    const refused = await pushBlob(h.url, bytes, { as: MEMBER })
    expect(refused.status).toBe(403)
    expect(await h.hold.ctx.blobs.size(refused.digest.slice(7))).toBeNull()

    const big = await pushBlob(h.url, fakeLayer(1000).bytes, { as: BIG })
    expect(big.status).toBe(201)
    const owner = await pushBlob(h.url, fakeLayer(5000).bytes)
    expect(owner.status).toBe(201)
  })

  it('answers the QuotaExceeded error shape at the upload', async () => {
    const { bytes, layer } = fakeLayer(50)
    const signed = await xrpc<{ url: string }>(
      h.url,
      ids.SyncGetBlob,
      { did: MEMBER, cid: layer.digest, method: 'PUT' },
      {
        headers: await ownerAuth(h.url, { as: MEMBER }),
      },
    )
    expect(signed.status).toBe(200)
    const res = await fetch(signed.body.url, { method: 'PUT', body: bytes })
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({
      error: 'QuotaExceeded',
      message: expect.stringMatching(
        /this 50-byte upload would pass the limit of 200 bytes/,
      ),
    })
  })

  it('refuses getQuota without a DID, by the lexicon', async () => {
    for (const params of [{}, { userDid: 'nope' }]) {
      const res = await xrpc(h.url, ids.HoldGetQuota, params)
      expect(res.status).toBe(400)
      expect(res.body.error).toBe('InvalidRequest')
    }
  })

  it('reads the quota from one row of totals, not the layer records (the query plan)', () => {
    const plan = h.hold.ctx.db.db
      .prepare(
        'EXPLAIN QUERY PLAN SELECT unique_blobs, total_size FROM user_usage WHERE user_did = ?',
      )
      .all('x') as { detail: string }[]
    expect(plan.map((p) => p.detail).join(' ')).toMatch(
      /SEARCH user_usage USING PRIMARY KEY \(user_did=\?\)/,
    )
  })
})
