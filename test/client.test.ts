// atcr-hold/client against a live hold: every method, its typed errors and its tokens.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  HoldClient,
  HoldError,
  sha256Digest,
  type GetToken,
} from '../src/client/index.ts'
import { serviceToken } from './_identity.ts'
import { blobDigest } from './_shared.ts'
import { startHold, TEST_OWNER, type TestHold } from './_util.ts'

const REPO = 'client/app'
const asOwner: GetToken = (aud, lxm, { exp }) =>
  serviceToken({ iss: TEST_OWNER, aud, lxm, exp })

const failure = async (p: Promise<unknown>): Promise<HoldError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(HoldError)
  return err as HoldError
}

let h: TestHold
let client: HoldClient
const asked: { aud: string; lxm: string; exp: number }[] = []

beforeAll(async () => {
  h = await startHold()
  client = new HoldClient({
    allowHttpLocalhost: true,
    getToken: (aud, lxm, opts) => {
      asked.push({ aud, lxm, ...opts })
      return asOwner(aud, lxm, opts)
    },
  })
})
afterAll(() => h?.stop())

describe('blobs', () => {
  const bytes = new Uint8Array(randomBytes(50_000))
  let cid: string

  it('pushBlob stores a blob in parts with the five procedures and counts one push', async () => {
    cid = await sha256Digest(bytes)
    expect(cid).toBe(blobDigest(bytes))
    const done = await client.pushBlob(h.did, bytes, {
      did: TEST_OWNER,
      repo: REPO,
      partSize: 20_000,
    })
    expect(done).toEqual({ status: 'completed', digest: cid, size: 50_000 })
    expect(
      await client.getStats(h.did, { did: TEST_OWNER, repo: REPO }),
    ).toMatchObject({ pushCount: 1, pullCount: 0 })
  })

  it('getBlob answers the bytes, and counts a pull with repo', async () => {
    const got = await client.getBlob(h.did, {
      did: TEST_OWNER,
      cid,
      repo: REPO,
    })
    expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true)
    expect(
      await client.getStats(h.did, { did: TEST_OWNER, repo: REPO }),
    ).toMatchObject({ pullCount: 1 })
    await client.getBlob(h.did, { did: TEST_OWNER, cid })
    expect(
      (await client.getStats(h.did, { did: TEST_OWNER, repo: REPO })).pullCount,
    ).toBe(1)
  })

  it('getBlobUrl answers signed GET and HEAD URLs, and a PUT URL with a token', async () => {
    const get = await client.getBlobUrl(h.did, {
      did: TEST_OWNER,
      cid,
      method: 'GET',
    })
    expect(get.method).toBe('GET')
    expect(Date.parse(get.expiresAt)).toBeGreaterThan(Date.now())
    const res = await fetch(get.url)
    expect(
      Buffer.from(await res.arrayBuffer()).equals(Buffer.from(bytes)),
    ).toBe(true)
    const head = await client.getBlobUrl(h.did, {
      did: TEST_OWNER,
      cid,
      method: 'HEAD',
    })
    expect((await fetch(head.url, { method: 'HEAD' })).status).toBe(200)

    const other = new Uint8Array(randomBytes(1000))
    const put = await client.getBlobUrl(h.did, {
      did: TEST_OWNER,
      cid: blobDigest(other),
      method: 'PUT',
    })
    expect((await fetch(put.url, { method: 'PUT', body: other })).status).toBe(
      201,
    )
    const back = await client.getBlob(h.did, {
      did: TEST_OWNER,
      cid: blobDigest(other),
    })
    expect(Buffer.from(back).equals(Buffer.from(other))).toBe(true)
  })

  it('a missing blob is a HoldError named BlobNotFound, with the status and the hold', async () => {
    const err = await failure(
      client.getBlob(h.did, {
        did: TEST_OWNER,
        cid: `sha256:${'0'.repeat(64)}`,
      }),
    )
    expect(err.error).toBe('BlobNotFound')
    expect(err.status).toBe(404)
    expect(err.hold).toBe(h.did)
    expect(err.nsid).toBe('com.atproto.sync.getBlob')
  })

  it('parameters the lexicon refuses fail as InvalidRequest before any request', async () => {
    const err = await failure(
      client.getBlob(h.did, {
        did: TEST_OWNER,
        cid,
        repo: 'x'.repeat(300),
      }),
    )
    expect(err.error).toBe('InvalidRequest')
    expect(err.status).toBeUndefined()
    expect(err.message).toMatch(/repo/)
  })
})

describe('the upload procedures one by one', () => {
  it('initiateUpload, getPartUploadUrl and its PUT, uploadPart, completeUpload', async () => {
    const part1 = new Uint8Array(randomBytes(10_000))
    const part2 = new Uint8Array(randomBytes(5_000))
    const whole = new Uint8Array([...part1, ...part2])
    const digest = blobDigest(whole)
    const { uploadId } = await client.initiateUpload(h.did, { digest })
    const signed = await client.getPartUploadUrl(h.did, {
      uploadId,
      partNumber: 1,
    })
    expect(signed.method ?? 'PUT').toBe('PUT')
    const put = await fetch(signed.url, { method: 'PUT', body: part1 })
    expect(put.status).toBeLessThan(300)
    const etag1 = put.headers.get('etag')!
    const { etag: etag2 } = await client.uploadPart(h.did, {
      uploadId,
      partNumber: 2,
      body: part2,
    })
    const done = await client.completeUpload(h.did, {
      uploadId,
      digest,
      parts: [
        { partNumber: 1, etag: etag1 },
        { partNumber: 2, etag: etag2 },
      ],
    })
    expect(done).toEqual({ status: 'completed', digest, size: 15_000 })
  })

  it('abortUpload ends an upload: completing it afterwards is InvalidUploadId', async () => {
    const digest = blobDigest(new Uint8Array([1, 2, 3]))
    const { uploadId } = await client.initiateUpload(h.did, { digest })
    expect(await client.abortUpload(h.did, { uploadId })).toEqual({
      status: 'aborted',
    })
    const err = await failure(
      client.completeUpload(h.did, { uploadId, digest, parts: [] }),
    )
    expect(err.error).toBe('InvalidUploadId')
  })

  it('a digest that does not match fails completeUpload with InvalidDigest', async () => {
    const err = await failure(
      client.pushBlob(h.did, new Uint8Array([1, 2, 3]), {
        digest: blobDigest(new Uint8Array([4])),
      }),
    )
    expect(err.error).toBe('InvalidDigest')
  })
})

describe('notifyManifest', () => {
  it('records the layers of a pushed manifest', async () => {
    const layer = new Uint8Array(randomBytes(2000))
    const { digest } = await client.pushBlob(h.did, layer, {
      did: TEST_OWNER,
      repo: REPO,
    })
    const res = await client.notifyManifest(h.did, {
      repository: REPO,
      userDid: TEST_OWNER,
      manifestDigest: blobDigest(new TextEncoder().encode('m1')),
      manifest: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        layers: [
          {
            digest,
            size: layer.length,
            mediaType: 'application/vnd.oci.image.layer.v1.tar',
          },
        ],
      },
    })
    expect(res).toMatchObject({ success: true, layersCreated: 1 })
  })

  it('a userDid that is not the token issuer is UserMismatch', async () => {
    const err = await failure(
      client.notifyManifest(h.did, {
        repository: REPO,
        userDid: 'did:plc:someoneelse000000000000',
        manifestDigest: blobDigest(new TextEncoder().encode('m2')),
        manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json' },
      }),
    )
    expect(err.error).toBe('UserMismatch')
    expect(err.status).toBe(403)
  })
})

describe('stats', () => {
  it('getStats of an unknown pair is zeros', async () => {
    expect(
      await client.getStats(h.did, { did: TEST_OWNER, repo: 'never/pushed' }),
    ).toMatchObject({ pullCount: 0, pushCount: 0 })
  })

  it('listStats iterates over every page', async () => {
    const owner = 'did:plc:listpages0000000000000000'
    const { digest } = await client.pushBlob(h.did, new Uint8Array([7, 7]))
    for (const repo of ['a', 'b', 'c']) {
      await client.getBlob(h.did, { did: owner, cid: digest, repo })
    }
    const pages = []
    for await (const page of client.listStats(h.did, {
      did: owner,
      limit: 2,
    })) {
      pages.push(page.stats.map((s) => s.repository))
    }
    expect(pages).toEqual([['a', 'b'], ['c']])
  })

  it('a limit over the lexicon maximum is InvalidRequest', async () => {
    const it = client.listStats(h.did, { did: TEST_OWNER, limit: 500 })
    const err = await failure(it.next())
    expect(err.error).toBe('InvalidRequest')
  })
})

describe('service tokens', () => {
  it('are asked for with the bare hold DID and an explicit exp, once per method', () => {
    expect(asked.length).toBeGreaterThan(0)
    for (const t of asked) {
      expect(t.aud).toBe(h.did)
      expect(t.exp).toBeGreaterThan(Date.now() / 1000 + 300)
    }
    const lxms = asked.map((t) => t.lxm)
    expect(new Set(lxms).size).toBe(lxms.length)
  })

  it('are asked for again once within the margin before exp', async () => {
    const calls: string[] = []
    const c = new HoldClient({
      allowHttpLocalhost: true,
      tokenLifetimeSec: 60,
      tokenMarginSec: 58,
      getToken: (aud, lxm, opts) => {
        calls.push(lxm)
        return asOwner(aud, lxm, opts)
      },
    })
    const digest = blobDigest(new Uint8Array([9]))
    await c.initiateUpload(h.did, { digest })
    await c.initiateUpload(h.did, { digest })
    expect(calls).toHaveLength(1)
    await new Promise((r) => setTimeout(r, 2100))
    await c.initiateUpload(h.did, { digest })
    expect(calls).toHaveLength(2)
  })

  it('a token function that throws is TokenUnavailable, with its message', async () => {
    const c = new HoldClient({
      allowHttpLocalhost: true,
      getToken: () => {
        throw new Error('session expired')
      },
    })
    const err = await failure(
      c.initiateUpload(h.did, { digest: blobDigest(new Uint8Array([1])) }),
    )
    expect(err.error).toBe('TokenUnavailable')
    expect(err.message).toMatch(/session expired/)
  })

  it('a procedure without a token function is TokenUnavailable', async () => {
    const c = new HoldClient({ allowHttpLocalhost: true })
    const err = await failure(c.abortUpload(h.did, { uploadId: 'whatever' }))
    expect(err.error).toBe('TokenUnavailable')
  })

  it('a token the hold refuses is a 401 with its error name, and is not reused', async () => {
    const calls: string[] = []
    const c = new HoldClient({
      allowHttpLocalhost: true,
      getToken: (_aud, lxm, opts) => {
        calls.push(lxm)
        return serviceToken({
          iss: TEST_OWNER,
          aud: 'did:web:elsewhere.test',
          lxm,
          ...opts,
        })
      },
    })
    const digest = blobDigest(new Uint8Array([2]))
    const err = await failure(c.initiateUpload(h.did, { digest }))
    expect(err.status).toBe(401)
    expect(err.error).toBe('BadJwtAudience')
    await failure(c.initiateUpload(h.did, { digest }))
    expect(calls).toHaveLength(2)
  })
})

describe('a private hold', () => {
  let priv: TestHold
  beforeAll(async () => {
    priv = await startHold({ env: { HOLD_PUBLIC: 'false' } })
  })
  afterAll(() => priv?.stop())

  it('is read anonymously first, then with a token once it answered 401', async () => {
    const bytes = new Uint8Array(randomBytes(3000))
    const calls: string[] = []
    const c = new HoldClient({
      allowHttpLocalhost: true,
      getToken: (aud, lxm, opts) => {
        calls.push(lxm)
        return asOwner(aud, lxm, opts)
      },
    })
    const { digest } = await c.pushBlob(priv.did, bytes)
    calls.length = 0
    const got = await c.getBlob(priv.did, { did: TEST_OWNER, cid: digest })
    expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true)
    expect(calls).toEqual(['com.atproto.sync.getBlob'])

    const anon = new HoldClient({ allowHttpLocalhost: true })
    const err = await failure(
      anon.getBlob(priv.did, { did: TEST_OWNER, cid: digest }),
    )
    expect(err.error).toBe('AuthRequired')
    expect(err.status).toBe(401)
  })
})
