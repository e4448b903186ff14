import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import {
  afterAll,
  afterEach,
  beforeAll,
  describe,
  expect,
  it,
  onTestFinished,
} from 'vitest'
import { S3BlobStore } from '../../src/blobs/s3-store.ts'
import { Uploads } from '../../src/blobs/uploads.ts'
import { clusterKeys, connectRedis } from '../../src/cluster/redis.ts'
import { RedisUploadSessions } from '../../src/cluster/upload-sessions.ts'
import type { ClusterConfig } from '../../src/config.ts'
import { startS3, type TestS3 } from '../_s3.ts'
import { bodyOf, sha256 } from '../_stores.ts'
import { removeDir, tempDir, waitFor } from '../_util.ts'
import { startRedis, type TestRedis } from './_cluster.ts'

const ALICE = 'did:plc:sharedsweepalice0000000000'
const PREFIX = 'atcr-hold-sweep-test'

/** One machine of a cluster: its own S3 client and Redis connection, the shared uploads. */
type Machine = {
  uploads: Uploads
  sessions: RedisUploadSessions
  redis: Redis
  close(): Promise<void>
}

describe('the upload sweep of a cluster (sessions in Redis)', () => {
  let redis: TestRedis
  let s3: TestS3
  let dir: string
  const open: Machine[] = []

  const machine = async (ttlMs: number): Promise<Machine> => {
    const store = new S3BlobStore({
      target: s3.target,
      prefix: 'hold/',
      spoolDir: join(dir, `spool-${open.length}`),
      client: { retryDelaysMs: [] },
    })
    await store.init()
    const client = connectRedis(
      { redisUrl: redis.url } as ClusterConfig,
      'test',
    )
    await waitFor(() => client.status === 'ready', 5000)
    const sessions = new RedisUploadSessions({
      redis: client,
      keys: clusterKeys(PREFIX),
      ttlMs,
    })
    const m: Machine = {
      uploads: new Uploads(store, sessions, { ttlMs, maxBlobBytes: 2 ** 26 }),
      sessions,
      redis: client,
      close: async () => {
        client.disconnect()
        await store.close()
      },
    }
    open.push(m)
    return m
  }

  const leftovers = async (): Promise<string[]> => {
    const probe = new S3BlobStore({
      target: s3.target,
      prefix: 'hold/',
      spoolDir: join(dir, 'probe'),
      client: { retryDelaysMs: [] },
    })
    try {
      const uploads = await probe.client.listMultipartUploads('hold/uploads/')
      return uploads.map((u) => u.key)
    } finally {
      await probe.close()
    }
  }

  beforeAll(async () => {
    redis = await startRedis()
    s3 = await startS3()
    dir = await tempDir()
  })
  afterEach(async () => {
    for (const m of open.splice(0)) await m.close()
  })
  afterAll(async () => {
    await redis?.close()
    await s3?.close()
    if (dir) await removeDir(dir)
  })

  it('never removes an upload another machine started while it is open, however late the sweep; both count it in flight', async () => {
    const ttlMs = 3600_000
    const a = await machine(ttlMs)
    const b = await machine(ttlMs)
    const part = randomBytes(2000)
    const hex = sha256(part)
    const { uploadId } = await a.uploads.initiate({ caller: ALICE, hex })
    expect(await b.uploads.count()).toBe(1)
    const swept = await b.uploads.sweep(Date.now() + 10 * ttlMs)
    expect(swept).toEqual({ expired: 0, orphans: 0 })
    expect(await leftovers()).toHaveLength(1)
    // Still whole: a part through B, the completion on A.
    const { etag } = await b.uploads.putPart(
      ALICE,
      uploadId,
      1,
      bodyOf(part),
      part.length,
    )
    const done = await a.uploads.complete(ALICE, uploadId, hex, [
      { partNumber: 1, etag },
    ])
    expect(done).toMatchObject({ hex, size: part.length })
    expect(await b.uploads.count()).toBe(0)
    expect(await leftovers()).toEqual([])
  })

  it('leaves an upload past its TTL to the completion that holds it, and sweeps it once that call lets go', async () => {
    const ttlMs = 400
    const a = await machine(ttlMs)
    const b = await machine(ttlMs)
    const hex = sha256(randomBytes(8))
    const { uploadId } = await a.uploads.initiate({ caller: ALICE, hex })
    // A completion under way on A (its hold), while Redis drops the upload at its TTL.
    const hold = await a.sessions.hold(uploadId)
    expect(hold).toBeDefined()
    await waitFor(async () => (await a.sessions.get(uploadId)) === undefined)
    expect(await b.uploads.sweep(Date.now() + ttlMs)).toEqual({
      expired: 0,
      orphans: 0,
    })
    expect(await leftovers()).toHaveLength(1)
    // An id naming the hold's own key is no upload (400, not Redis's type error).
    await expect(
      b.uploads.partUrl(ALICE, `${uploadId}:held`, 1),
    ).rejects.toMatchObject({ code: 'InvalidUploadId' })
    // The holder still ends it (and so would count it); B's hold is refused meanwhile.
    await expect(b.sessions.hold(uploadId)).rejects.toMatchObject({
      code: 'InvalidUploadId',
    })
    expect(await hold!.end()).toBe(true)
    await hold!.release()
    expect(await b.uploads.sweep(Date.now() + ttlMs)).toEqual({
      expired: 0,
      orphans: 1,
    })
    expect(await leftovers()).toEqual([])
  })

  it('removes nothing while Redis is down, and answers 503 on every upload call', async () => {
    const ttlMs = 3600_000
    const a = await machine(ttlMs)
    const hex = sha256(randomBytes(8))
    const { uploadId } = await a.uploads.initiate({ caller: ALICE, hex })
    await redis.stop()
    onTestFinished(() => redis.start())
    await waitFor(() => a.redis.status !== 'ready', 5000)
    expect(await a.uploads.sweep(Date.now() + 10 * ttlMs)).toEqual({
      expired: 0,
      orphans: 0,
    })
    expect(await leftovers()).toHaveLength(1)
    for (const call of [
      () => a.uploads.initiate({ caller: ALICE, hex }),
      () => a.uploads.partUrl(ALICE, uploadId, 1),
      () => a.uploads.abort(ALICE, uploadId),
      () => a.uploads.count(),
    ]) {
      await expect(call()).rejects.toMatchObject({
        status: 503,
        error: 'UploadsUnavailable',
      })
    }
    // The refused initiate left nothing behind in the bucket.
    expect(await leftovers()).toHaveLength(1)
  })
})
