import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../../src/ids.ts'
import { addMember } from '../_appview.ts'
import { bearer } from '../_identity.ts'
import {
  ABORT,
  call,
  COMPLETE,
  digestOf,
  holdOn,
  INITIATE,
  PART_URL,
  uploadPart,
  type UploadTarget,
} from '../_uploads.ts'
import { holdInfo, TEST_OWNER, waitFor, xrpc, type TestHold } from '../_util.ts'
import { getStats, startCluster, type TestCluster } from './_cluster.ts'

const MEMBER = 'did:plc:clusteruploadsmember0000000'
/** S3's smallest part but the last. */
const MIB5 = 5 * 1024 * 1024

type Part = { partNumber: number; etag: string }

/** A blob of two parts: the first S3's minimum, the second small. */
const twoParts = () => {
  const parts = [randomBytes(MIB5), randomBytes(3000)]
  return { parts, digest: digestOf(Buffer.concat(parts)) }
}

const initiate = async (
  h: UploadTarget,
  digest: string,
  repo: string,
  as = TEST_OWNER,
) => {
  const res = await call(h, INITIATE, { digest, repo }, as)
  expect(res.status).toBe(200)
  return res.body.uploadId as string
}

/** Sends part 1 through `h` (uploadPart) and part 2 to the URL `h` signs for it. */
const sendParts = async (
  h: UploadTarget,
  uploadId: string,
  parts: Buffer[],
): Promise<Part[]> => {
  const first = await uploadPart(h, uploadId, 1, parts[0], TEST_OWNER)
  expect(first.status).toBe(200)
  const url = await call(h, PART_URL, { uploadId, partNumber: 2 }, TEST_OWNER)
  expect(url.status).toBe(200)
  const put = await fetch(url.body.url as string, {
    method: 'PUT',
    body: parts[1],
  })
  expect(put.status).toBe(200)
  return [
    { partNumber: 1, etag: first.body.etag },
    { partNumber: 2, etag: put.headers.get('etag')! },
  ]
}

/** The blob's bytes as `h` serves them (getBlob's presigned URL). */
const pullBytes = async (h: UploadTarget, digest: string): Promise<Buffer> => {
  const res = await xrpc<{ url: string }>(h.url, ids.SyncGetBlob, {
    did: TEST_OWNER,
    cid: digest,
    method: 'GET',
  })
  expect(res.status).toBe(200)
  return Buffer.from(await (await fetch(res.body.url)).arrayBuffer())
}

/**
 * The pair's push count once every count taken so far has reached the writer: a counted pull
 * through each frontend is waited for, so a push one of them took is in by then as well.
 */
const settledPushes = async (
  cluster: TestCluster,
  repo: string,
  digest: string,
): Promise<number> => {
  const before = (await getStats(cluster.writer.url, TEST_OWNER, repo))
    .pullCount
  for (const f of cluster.frontends) {
    const res = await xrpc(f.url, ids.SyncGetBlob, {
      did: TEST_OWNER,
      cid: digest,
      repo,
      method: 'GET',
    })
    expect(res.status).toBe(200)
  }
  const want = before + cluster.frontends.length
  const s = await waitFor(async () => {
    const got = await getStats(cluster.writer.url, TEST_OWNER, repo)
    return got.pullCount === want ? got : undefined
  }, 20_000)
  return s!.pushCount
}

describe('multipart uploads across frontends (sessions in Redis)', () => {
  let cluster: TestCluster
  let single: (TestHold & { stop(): Promise<void> }) | undefined

  let holdDid: string
  /** The frontends, with the DID they all answer to (the writer's). */
  const frontends = (): UploadTarget[] =>
    cluster.frontends.map((f) => ({ url: f.url, did: holdDid }))

  beforeAll(async () => {
    cluster = await startCluster({ frontends: 2 })
    const info = await holdInfo(cluster.writer.url)
    expect(info.owner).toBe(TEST_OWNER)
    holdDid = info.did
  })
  afterAll(async () => {
    await single?.stop()
    await cluster?.close()
  })

  it('starts on frontend A, takes its parts through B, completes on A: the blob is served by both and its push counted once', async () => {
    const [a, b] = frontends()
    const { parts, digest } = twoParts()
    const uploadId = await initiate(a, digest, 'across')
    const listed = await sendParts(b, uploadId, parts)
    const done = await call(
      a,
      COMPLETE,
      { uploadId, digest, parts: listed },
      TEST_OWNER,
    )
    expect(done.status).toBe(200)
    expect(done.body).toEqual({
      status: 'completed',
      digest,
      size: MIB5 + 3000,
    })
    const whole = Buffer.concat(parts)
    for (const f of [a, b]) {
      expect((await pullBytes(f, digest)).equals(whole)).toBe(true)
    }
    expect(await settledPushes(cluster, 'across', digest)).toBe(1)
  })

  it('a second completion of the same upload, on the other frontend, stores and counts nothing more', async () => {
    const [a, b] = frontends()
    const { parts, digest } = twoParts()
    const uploadId = await initiate(b, digest, 'twice')
    const listed = await sendParts(a, uploadId, parts)
    const body = { uploadId, digest, parts: listed }
    expect((await call(a, COMPLETE, body, TEST_OWNER)).status).toBe(200)
    const again = await call(b, COMPLETE, body, TEST_OWNER)
    expect(again.status).toBe(400)
    expect(again.body).toMatchObject({ error: 'InvalidUploadId' })
    expect(await settledPushes(cluster, 'twice', digest)).toBe(1)
  })

  it('two completions at once on two frontends: one completes, the other is refused, one push', async () => {
    const [a, b] = frontends()
    const { parts, digest } = twoParts()
    const uploadId = await initiate(a, digest, 'race')
    const listed = await sendParts(b, uploadId, parts)
    const body = { uploadId, digest, parts: listed }
    const answers = await Promise.all([
      call(a, COMPLETE, body, TEST_OWNER),
      call(b, COMPLETE, body, TEST_OWNER),
    ])
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses).toEqual([200, 400])
    const refused = answers.find((r) => r.status === 400)!
    expect(['CompletionFailed', 'InvalidUploadId']).toContain(
      refused.body.error,
    )
    expect(await settledPushes(cluster, 'race', digest)).toBe(1)
  })

  it("answers an unknown upload id, and another user's, as a single hold does", async () => {
    const [a, b] = frontends()
    await addMember(cluster.writer.url, TEST_OWNER, MEMBER)
    single = await holdOn('s3')
    const { digest } = twoParts()
    const owned = await initiate(a, digest, 'foreign')
    // The same on a single hold: the owner's upload, asked for by a crew member.
    const singleOwned = await initiate(single, digest, 'foreign')
    await addMember(single.url, TEST_OWNER, MEMBER)
    // The crew change reaches frontend B through Redis.
    await waitFor(async () => {
      const res = await xrpc(
        b.url,
        INITIATE,
        {},
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(await bearer({ iss: MEMBER, aud: b.did, lxm: INITIATE })),
          },
          body: JSON.stringify({ digest }),
        },
      )
      return res.status === 200
    }, 10_000)

    const cases: [string, string, string][] = [
      ['unknown', 'no-such-upload', 'no-such-upload'],
      ["another user's", owned, singleOwned],
    ]
    const as = MEMBER
    for (const [what, clusterId, singleId] of cases) {
      const ask = async (h: UploadTarget, uploadId: string) => [
        await call(h, PART_URL, { uploadId, partNumber: 1 }, as),
        await uploadPart(h, uploadId, 1, randomBytes(100), as),
        await call(
          h,
          COMPLETE,
          { uploadId, digest, parts: [{ partNumber: 1, etag: '"x"' }] },
          as,
        ),
        await call(h, ABORT, { uploadId }, as),
      ]
      const want = (await ask(single, singleId)).map((r) => [
        r.status,
        (r.body as { error?: string }).error,
      ])
      expect(want[0][0], what).toBeGreaterThanOrEqual(400)
      expect(want[0][0], what).toBeLessThan(500)
      const got = (await ask(b, clusterId)).map((r) => [
        r.status,
        (r.body as { error?: string }).error,
      ])
      expect(got, what).toEqual(want)
    }
    // The owner's upload is untouched by all that.
    expect((await call(a, ABORT, { uploadId: owned }, TEST_OWNER)).status).toBe(
      200,
    )
  })

  it('with Redis stopped the upload procedures answer 503 and pulls go on; once it is back the upload completes', async () => {
    const [a, b] = frontends()
    const { parts, digest } = twoParts()
    const uploadId = await initiate(a, digest, 'outage')
    const listed = await sendParts(b, uploadId, parts)
    const stored = twoParts()
    const storedId = await initiate(a, stored.digest, 'outage')
    const storedParts = await sendParts(a, storedId, stored.parts)
    expect(
      (
        await call(
          b,
          COMPLETE,
          {
            uploadId: storedId,
            digest: stored.digest,
            parts: storedParts,
          },
          TEST_OWNER,
        )
      ).status,
    ).toBe(200)

    await cluster.redis.stop()
    try {
      for (const f of [a, b]) {
        const answers = [
          await call(f, INITIATE, { digest }, TEST_OWNER),
          await call(f, PART_URL, { uploadId, partNumber: 1 }, TEST_OWNER),
          await uploadPart(f, uploadId, 1, parts[0], TEST_OWNER),
          await call(
            f,
            COMPLETE,
            { uploadId, digest, parts: listed },
            TEST_OWNER,
          ),
          await call(f, ABORT, { uploadId }, TEST_OWNER),
        ]
        for (const r of answers) {
          expect(r.status).toBe(503)
          expect(r.body).toMatchObject({ error: 'UploadsUnavailable' })
          expect(r.headers.get('retry-after')).toBe('1')
        }
        const whole = Buffer.concat(stored.parts)
        expect((await pullBytes(f, stored.digest)).equals(whole)).toBe(true)
      }
    } finally {
      await cluster.redis.start()
    }
    const done = await waitFor(async () => {
      const res = await call(
        b,
        COMPLETE,
        { uploadId, digest, parts: listed },
        TEST_OWNER,
      )
      return res.status === 503 ? undefined : res
    }, 15_000)
    expect(done!.status).toBe(200)
    expect(done!.body).toMatchObject({ status: 'completed', digest })
  })
})
