import { ids } from '../src/ids.ts'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { addCrew, expectXrpcError, getStats } from './_access.ts'
import {
  ABORT,
  call,
  COMPLETE,
  digestOf,
  holdOn,
  INITIATE,
  PART_URL,
  split,
  uploadPart,
  type StoreKind,
} from './_uploads.ts'
import { ownerAuth, pushBlob, TEST_OWNER, xrpc } from './_util.ts'

const OWNER = TEST_OWNER
const REPO = 'team/app'

/** getBlob as an AppView pulls: method=GET with repo, then the bytes from the URL. */
const pull = async (h: { url: string }, digest: string, repo?: string) => {
  const res = await xrpc<{ url: string; expiresAt: string }>(
    h.url,
    ids.SyncGetBlob,
    { did: OWNER, cid: digest, method: 'GET', repo },
    { headers: await ownerAuth(h.url) },
  )
  if (res.status !== 200) return { status: res.status, bytes: null, res }
  const got = await fetch(res.body.url)
  return {
    status: got.status,
    bytes: Buffer.from(await got.arrayBuffer()),
    res,
  }
}

describe.each<StoreKind>(['disk', 's3'])('upload procedures on %s', (kind) => {
  let h: Awaited<ReturnType<typeof holdOn>>
  beforeAll(async () => {
    h = await holdOn(kind)
  })
  afterAll(() => h.stop())

  it("take an AppView's push (initiate, part URLs, PUT parts out of order and again, complete), then count one push and one pull", async () => {
    const blob = randomBytes(300_000)
    const digest = digestOf(blob)
    const parts = split(blob, 3)
    const init = await call<{ uploadId: string }>(h, INITIATE, {
      digest,
      repo: REPO,
    })
    expect(init.status, JSON.stringify(init.body)).toBe(200)
    const { uploadId } = init.body
    const etags = new Map<number, string>()
    for (const n of [3, 1, 2, 2]) {
      const signed = await call<{ url: string; method: string }>(h, PART_URL, {
        uploadId,
        partNumber: n,
      })
      expect(signed.status, JSON.stringify(signed.body)).toBe(200)
      expect(signed.body.method).toBe('PUT')
      if (kind === 's3') expect(signed.body.url).toContain(h.s3!.endpoint)
      const put = await fetch(signed.body.url, {
        method: 'PUT',
        body: parts[n - 1],
      })
      await put.arrayBuffer()
      expect(put.status).toBe(200)
      etags.set(n, put.headers.get('etag')!)
    }
    const done = await call(h, COMPLETE, {
      uploadId,
      digest,
      parts: [1, 2, 3].map((partNumber) => ({
        partNumber,
        etag: etags.get(partNumber),
      })),
    })
    expect(done.status, JSON.stringify(done.body)).toBe(200)
    expect(done.body).toMatchObject({ status: 'completed', digest })

    const got = await pull(h, digest, REPO)
    expect(got.status).toBe(200)
    expect(got.bytes!.equals(blob)).toBe(true)
    if (kind === 's3') {
      // Presigned on S3: the bytes did not pass through the hold.
      expect(got.res.body.url.startsWith(h.s3!.endpoint)).toBe(true)
    }
    await h.hold.ctx.stats.flush()
    const stats = await getStats(h, OWNER, REPO)
    expect([stats.pushCount, stats.pullCount]).toEqual([1, 1])
  })

  it('take parts through the hold (uploadPart), 1 and 100 of them, in any order', async () => {
    for (const n of [1, 100]) {
      const blob = randomBytes(n * 1000 + 17)
      const digest = digestOf(blob)
      const { uploadId } = (
        await call<{ uploadId: string }>(h, INITIATE, { digest })
      ).body
      const parts = split(blob, n)
      const order = parts.map((_, i) => i + 1).reverse()
      const listed = []
      for (const partNumber of order) {
        const res = await uploadPart(
          h,
          uploadId,
          partNumber,
          parts[partNumber - 1],
        )
        expect(res.status, JSON.stringify(res.body)).toBe(200)
        expect(res.headers.get('etag')).toBe(res.body.etag)
        listed.push({ partNumber, etag: res.body.etag })
      }
      const done = await call(h, COMPLETE, { uploadId, digest, parts: listed })
      expect(done.status, JSON.stringify(done.body)).toBe(200)
      expect((await pull(h, digest)).bytes!.equals(blob)).toBe(true)
    }
  })

  it('store nothing and count nothing for bytes that do not hash to the digest, and end the upload', async () => {
    const blob = randomBytes(5000)
    const claimed = digestOf(randomBytes(10))
    const { uploadId } = (
      await call<{ uploadId: string }>(h, INITIATE, {
        digest: claimed,
        repo: 'wrong/digest',
      })
    ).body
    const part = await uploadPart(h, uploadId, 1, blob)
    const done = await call(h, COMPLETE, {
      uploadId,
      digest: claimed,
      parts: [{ partNumber: 1, etag: part.body.etag }],
    })
    expectXrpcError(done, 400, 'InvalidDigest')
    expect((await pull(h, claimed)).status).toBe(404)
    expect((await pull(h, digestOf(blob))).status).toBe(404)
    expectXrpcError(await call(h, ABORT, { uploadId }), 400, 'InvalidUploadId')
    await h.hold.ctx.stats.flush()
    const stats = await getStats(h, OWNER, 'wrong/digest')
    expect([stats.pushCount, stats.pullCount]).toEqual([0, 0])
  })

  it('abort an upload: its parts are gone, and the id answers InvalidUploadId after', async () => {
    const blob = randomBytes(4000)
    const digest = digestOf(blob)
    const { uploadId } = (
      await call<{ uploadId: string }>(h, INITIATE, { digest })
    ).body
    const part = await uploadPart(h, uploadId, 1, blob)
    const aborted = await call(h, ABORT, { uploadId })
    expect(aborted.status).toBe(200)
    expect(aborted.body).toEqual({ status: 'aborted' })
    expectXrpcError(
      await call(h, COMPLETE, {
        uploadId,
        digest,
        parts: [{ partNumber: 1, etag: part.body.etag }],
      }),
      400,
      'InvalidUploadId',
    )
    expect(await h.hold.ctx.uploads.count()).toBe(0)
    expect((await pull(h, digest)).status).toBe(404)
  })

  it('answer every bad input with its lexicon error, storing nothing', async () => {
    const blob = randomBytes(2000)
    const digest = digestOf(blob)
    for (const bad of ['sha256:abc', `sha512:${'a'.repeat(64)}`, 'x']) {
      expectXrpcError(
        await call(h, INITIATE, { digest: bad }),
        400,
        'InvalidDigest',
      )
    }
    expectXrpcError(await call(h, INITIATE, {}), 400, 'InvalidRequest')
    expectXrpcError(
      await call(h, INITIATE, { digest, repo: 'Not A Repo' }),
      400,
      'InvalidRequest',
    )
    const { uploadId } = (
      await call<{ uploadId: string }>(h, INITIATE, { digest })
    ).body
    for (const partNumber of [0, 10_001, -1]) {
      expectXrpcError(
        await call(h, PART_URL, { uploadId, partNumber }),
        400,
        'InvalidPartNumber',
      )
      expectXrpcError(
        await uploadPart(h, uploadId, partNumber, blob),
        400,
        'InvalidPartNumber',
      )
    }
    expectXrpcError(
      await uploadPart(h, uploadId, 'one', blob),
      400,
      'InvalidPartNumber',
    )
    expectXrpcError(
      await call(h, PART_URL, { uploadId: 'nope', partNumber: 1 }),
      400,
      'InvalidUploadId',
    )
    expectXrpcError(
      await uploadPart(h, 'nope', 1, blob),
      400,
      'InvalidUploadId',
    )
    const part = await uploadPart(h, uploadId, 1, blob)
    expectXrpcError(
      await call(h, COMPLETE, { uploadId, digest, parts: [] }),
      400,
      'MissingParts',
    )
    expectXrpcError(
      await call(h, COMPLETE, {
        uploadId,
        digest,
        parts: [{ partNumber: 1, etag: 'not-the-etag' }],
      }),
      400,
      'MissingParts',
    )
    expectXrpcError(
      await call(h, COMPLETE, {
        uploadId,
        digest,
        parts: [
          { partNumber: 1, etag: part.body.etag },
          { partNumber: 2, etag: part.body.etag },
        ],
      }),
      400,
      'MissingParts',
    )
    expectXrpcError(
      await call(h, COMPLETE, {
        uploadId,
        digest: 'sha256:short',
        parts: [{ partNumber: 1, etag: part.body.etag }],
      }),
      400,
      'InvalidDigest',
    )
    expect((await pull(h, digest)).status).toBe(404)
    // The upload is still open after those refusals.
    const done = await call(h, COMPLETE, {
      uploadId,
      digest,
      parts: [{ partNumber: 1, etag: part.body.etag }],
    })
    expect(done.status, JSON.stringify(done.body)).toBe(200)
  })

  it('answer only the caller who started an upload, and need blob:write', async () => {
    const other = 'did:plc:uploadcrew0000000000000'
    expect(
      (await addCrew(h, other, ['blob:read', 'blob:write'], { as: OWNER }))
        .status,
    ).toBe(200)
    const reader = 'did:plc:uploadreader00000000000'
    await addCrew(h, reader, ['blob:read'], { as: OWNER })
    const blob = randomBytes(1000)
    const digest = digestOf(blob)
    const { uploadId } = (
      await call<{ uploadId: string }>(h, INITIATE, { digest })
    ).body
    expectXrpcError(
      await call(h, PART_URL, { uploadId, partNumber: 1 }, other),
      400,
      'InvalidUploadId',
    )
    expectXrpcError(
      await uploadPart(h, uploadId, 1, blob, other),
      400,
      'InvalidUploadId',
    )
    expectXrpcError(
      await call(h, ABORT, { uploadId }, other),
      400,
      'InvalidUploadId',
    )
    expectXrpcError(await call(h, INITIATE, { digest }, reader), 403)
    const anonymous = await xrpc(
      h.url,
      INITIATE,
      {},
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ digest }),
      },
    )
    expectXrpcError(anonymous, 401)
    // The owner's upload is untouched by all that.
    const part = await uploadPart(h, uploadId, 1, blob)
    expect(part.status).toBe(200)
    await call(h, ABORT, { uploadId })
  })

  it('refuses a part URL that was altered or names another part', async () => {
    const blob = randomBytes(1000)
    const { uploadId } = (
      await call<{ uploadId: string }>(h, INITIATE, { digest: digestOf(blob) })
    ).body
    const signed = (
      await call<{ url: string }>(h, PART_URL, { uploadId, partNumber: 1 })
    ).body.url
    const other = signed.replace(/partNumber=1\b|\/parts\/1\?/, (m) =>
      m.startsWith('partNumber') ? 'partNumber=2' : '/parts/2?',
    )
    expect(other).not.toBe(signed)
    const res = await fetch(other, { method: 'PUT', body: blob })
    await res.arrayBuffer()
    expect(res.status).toBe(403)
    await call(h, ABORT, { uploadId })
  })

  it('still take a single signed PUT (small blobs, existing clients)', async () => {
    const blob = randomBytes(70_000)
    const pushed = await pushBlob(h.url, blob, {
      did: OWNER,
      repo: 'single/put',
    })
    expect(pushed.status).toBe(201)
    expect((await pull(h, pushed.digest)).bytes!.equals(blob)).toBe(true)
  })
})
