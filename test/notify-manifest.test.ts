import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  callAs,
  fakeLayer,
  headRev,
  LAYER,
  LAYER_TYPE,
  manifestBody,
  NOTIFY,
  published,
  pushLayers,
  verifiedRecords,
  type Layer,
} from './_appview.ts'
import { identity } from './_identity.ts'
import { startHold, TEST_OWNER, type TestHold } from './_util.ts'

const STRANGER = 'did:plc:notifystranger00000000000'

describe('io.atcr.hold.notifyManifest', () => {
  let h: TestHold
  let layers: Layer[]
  let commits = 0

  beforeAll(async () => {
    await identity(STRANGER)
    h = await startHold()
    h.hold.ctx.writer.onCommit(() => commits++)
    layers = await pushLayers(h.url, 3)
  })
  afterAll(() => h.stop())

  const layerRecords = async () =>
    (await verifiedRecords(h.url)).filter((r) => r.collection === LAYER)

  it('writes one io.atcr.hold.layer record per stored layer in one commit, valid under ATCR’s published schema', async () => {
    const before = commits
    const body = manifestBody(TEST_OWNER, layers, { repository: 'web/app' })
    const res = await callAs(h.url, NOTIFY, TEST_OWNER, body)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      success: true,
      operation: 'push',
      statsUpdated: false,
      layersCreated: 3,
    })
    expect(commits - before).toBe(1)
    const records = await layerRecords()
    expect(records.map((r) => r.record.digest).sort()).toEqual(
      layers.map((l) => l.digest).sort(),
    )
    const hex = (body.manifestDigest as string).slice('sha256:'.length)
    for (const { rkey, record } of records) {
      expect(() => published.assertValidRecord(LAYER, record)).not.toThrow()
      expect(() =>
        h.hold.ctx.lexicons.assertValidRecord(LAYER, record),
      ).not.toThrow()
      expect(rkey).toMatch(/^[2-7a-z]{13}$/)
      expect(record).toMatchObject({
        userDid: TEST_OWNER,
        repository: 'web/app',
        manifest: `at://${TEST_OWNER}/io.atcr.manifest/${hex}`,
        mediaType: LAYER_TYPE,
        size: 64,
      })
    }
  })

  it('writes nothing when the same manifest is notified again, however often and concurrently', async () => {
    const body = manifestBody(TEST_OWNER, layers, { repository: 'web/app' })
    const rev = await headRev(h.url)
    const results = await Promise.all(
      [1, 2, 3].map(() => callAs(h.url, NOTIFY, TEST_OWNER, body)),
    )
    for (const res of results) {
      expect(res.status).toBe(200)
      expect(res.body.layersCreated).toBe(0)
    }
    expect(await headRev(h.url)).toBe(rev)
    expect((await layerRecords()).length).toBe(3)
  })

  it('records each layer once when concurrent first notifications of one manifest race', async () => {
    const fresh = await pushLayers(h.url, 2)
    const body = manifestBody(TEST_OWNER, fresh, { repository: 'race' })
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => callAs(h.url, NOTIFY, TEST_OWNER, body)),
    )
    expect(
      results
        .map((r) => r.body.layersCreated as number)
        .reduce((a, b) => a + b),
    ).toBe(2)
    const race = (await layerRecords()).filter(
      (r) => r.record.repository === 'race',
    )
    expect(race.length).toBe(2)
  })

  it('gives each manifest naming a layer its own record, and a layer listed twice one', async () => {
    const [shared] = layers
    const body = manifestBody(TEST_OWNER, [shared, shared], {
      repository: 'web/other',
    })
    const res = await callAs(h.url, NOTIFY, TEST_OWNER, body)
    expect(res.body.layersCreated).toBe(1)
  })

  it('reports the layers the hold does not store and records only the others', async () => {
    const absent = fakeLayer().layer
    const body = manifestBody(TEST_OWNER, [layers[0], absent], {
      repository: 'partial',
    })
    const res = await callAs(h.url, NOTIFY, TEST_OWNER, body)
    expect(res.status).toBe(200)
    expect(res.body.layersCreated).toBe(1)
    expect(res.body.missingLayers).toEqual([absent.digest])
    const digests = (await layerRecords())
      .filter((r) => r.record.repository === 'partial')
      .map((r) => r.record.digest)
    expect(digests).toEqual([layers[0].digest])
  })

  it('accepts a multi-arch index (children, no layers) and a pull, writing nothing', async () => {
    const rev = await headRev(h.url)
    const index = {
      repository: 'web/app',
      userDid: TEST_OWNER,
      manifestDigest: `sha256:${'c'.repeat(64)}`,
      manifest: {
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            digest: `sha256:${'a'.repeat(64)}`,
            size: 500,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            platform: { os: 'linux', architecture: 'amd64' },
          },
          {
            digest: `sha256:${'b'.repeat(64)}`,
            size: 500,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
          },
        ],
      },
    }
    const push = await callAs(h.url, NOTIFY, TEST_OWNER, index)
    expect(push.status).toBe(200)
    expect(push.body.layersCreated).toBe(0)
    const pull = await callAs(h.url, NOTIFY, TEST_OWNER, {
      ...manifestBody(TEST_OWNER, layers, { repository: 'web/app' }),
      operation: 'pull',
    })
    expect(pull.status).toBe(200)
    expect(pull.body).toEqual({
      success: true,
      operation: 'pull',
      statsUpdated: false,
    })
    expect(await headRev(h.url)).toBe(rev)
  })

  describe('refuses, writing nothing', () => {
    const refused = async (
      as: string | undefined,
      body: unknown,
      status: number,
      error: string,
      raw?: string,
    ) => {
      const rev = await headRev(h.url)
      const count = (await layerRecords()).length
      const res = await callAs(h.url, NOTIFY, as, body, { raw })
      expect(res.status, JSON.stringify(res.body)).toBe(status)
      expect(res.body.error).toBe(error)
      expect(typeof res.body.message).toBe('string')
      expect(await headRev(h.url)).toBe(rev)
      expect((await layerRecords()).length).toBe(count)
      return res
    }

    it('a notification for another DID than the token’s issuer (UserMismatch)', async () => {
      const fresh = await pushLayers(h.url, 1)
      await refused(
        STRANGER,
        manifestBody(TEST_OWNER, fresh),
        403,
        'UserMismatch',
      )
      await refused(
        TEST_OWNER,
        manifestBody(STRANGER, fresh),
        403,
        'UserMismatch',
      )
    })

    it('a call without a token, and a push from a DID that is not crew', async () => {
      const fresh = await pushLayers(h.url, 1)
      await refused(
        undefined,
        manifestBody(TEST_OWNER, fresh),
        401,
        'AuthRequired',
      )
      await refused(STRANGER, manifestBody(STRANGER, fresh), 403, 'Forbidden')
    })

    it('an operation other than push or pull (InvalidOperation)', async () => {
      for (const operation of ['delete', 'PUSH', '']) {
        await refused(
          TEST_OWNER,
          { ...manifestBody(TEST_OWNER, layers), operation },
          400,
          'InvalidOperation',
        )
      }
    })

    it('a manifest listing 201 layers, and one listing 10,000 (too large a body)', async () => {
      const many = (n: number) =>
        Array.from({ length: n }, (_, i) => ({
          digest: `sha256:${i.toString(16).padStart(64, '0')}`,
          size: 1,
          mediaType: LAYER_TYPE,
        }))
      await refused(
        TEST_OWNER,
        manifestBody(TEST_OWNER, many(201)),
        400,
        'InvalidRequest',
      )
      await refused(
        TEST_OWNER,
        manifestBody(TEST_OWNER, many(10_000)),
        413,
        'PayloadTooLarge',
      )
    })

    it('deeply nested bodies', async () => {
      const body = manifestBody(TEST_OWNER, layers) as {
        manifest: Record<string, unknown>
      }
      let deep: Record<string, unknown> = {}
      const top = deep
      for (let i = 0; i < 50; i++) {
        deep.x = {}
        deep = deep.x as Record<string, unknown>
      }
      await refused(
        TEST_OWNER,
        { ...body, manifest: { ...body.manifest, annotations: top } },
        400,
        'InvalidRequest',
      )
      const raw = `${'['.repeat(20_000)}${']'.repeat(20_000)}`
      await refused(
        TEST_OWNER,
        undefined,
        400,
        'InvalidRequest',
        `{"repository":"app","userDid":"${TEST_OWNER}","manifestDigest":"${layers[0].digest}","manifest":{"mediaType":"x","layers":${raw}}}`,
      )
    })

    it('digests that are not sha256 digests, anywhere in the manifest', async () => {
      const bad = [
        'sha256:' + 'A'.repeat(64),
        'sha256:' + 'a'.repeat(63),
        'sha512:' + 'a'.repeat(128),
        'md5:d41d8cd98f00b204e9800998ecf8427e',
        '../../etc/passwd',
        '',
      ]
      for (const digest of bad) {
        const layer = { ...layers[0], digest }
        await refused(
          TEST_OWNER,
          manifestBody(TEST_OWNER, [layers[1], layer]),
          400,
          'InvalidRequest',
        )
        await refused(
          TEST_OWNER,
          manifestBody(TEST_OWNER, layers, { manifestDigest: digest }),
          400,
          'InvalidRequest',
        )
        await refused(
          TEST_OWNER,
          manifestBody(TEST_OWNER, layers, {
            config: { digest, size: 10, mediaType: 'x' },
          }),
          400,
          'InvalidRequest',
        )
      }
    })

    it('a layer whose size is not the stored blob’s, a bad repository, visibility or media type', async () => {
      const fresh = await pushLayers(h.url, 1)
      await refused(
        TEST_OWNER,
        manifestBody(TEST_OWNER, [{ ...fresh[0], size: 65 }]),
        400,
        'InvalidRequest',
      )
      for (const repository of ['Web/App', '/app', 'a'.repeat(257), 'a//b']) {
        await refused(
          TEST_OWNER,
          manifestBody(TEST_OWNER, fresh, { repository }),
          400,
          'InvalidRequest',
        )
      }
      await refused(
        TEST_OWNER,
        manifestBody(TEST_OWNER, fresh, { visibility: 'secret' }),
        400,
        'InvalidRequest',
      )
      await refused(
        TEST_OWNER,
        manifestBody(TEST_OWNER, [{ ...fresh[0], mediaType: 'x'.repeat(129) }]),
        400,
        'InvalidRequest',
      )
    })

    it('bodies that are not the lexicon’s shape', async () => {
      const body = manifestBody(TEST_OWNER, layers)
      for (const broken of [
        { ...body, manifest: undefined },
        { ...body, userDid: 'not-a-did' },
        { ...body, manifest: { ...(body.manifest as object), layers: 'x' } },
        {
          ...body,
          manifest: {
            ...(body.manifest as object),
            layers: [{ ...layers[0], size: -1 }],
          },
        },
        {
          ...body,
          manifest: {
            ...(body.manifest as object),
            layers: [{ ...layers[0], size: 1.5 }],
          },
        },
      ]) {
        await refused(TEST_OWNER, broken, 400, 'InvalidRequest')
      }
      await refused(TEST_OWNER, undefined, 400, 'InvalidRequest', '{"repo')
    })
  })

  it('is served at the NSID in ids', () => {
    expect(ids.HoldNotifyManifest).toBe(NOTIFY)
  })
})
