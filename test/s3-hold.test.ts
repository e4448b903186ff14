import { ids } from '../src/ids.ts'
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { createConnection, createServer, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectXrpcError, getStats } from './_access.ts'
import { startS3, s3Env, type TestS3 } from './_s3.ts'
import {
  call,
  COMPLETE,
  digestOf,
  holdOn,
  INITIATE,
  uploadPart,
} from './_uploads.ts'
import {
  ownerAuth,
  pushBlob,
  removeDir,
  startHold,
  tempDir,
  TEST_OWNER,
  xrpc,
} from './_util.ts'

const GET_BLOB = ids.SyncGetBlob

const getBlob = async (
  h: { url: string },
  params: Record<string, string>,
  headers: Record<string, string> = {},
) =>
  fetch(
    `${h.url}/xrpc/${GET_BLOB}?${new URLSearchParams({ did: TEST_OWNER, ...params })}`,
    { headers: { ...(await ownerAuth(h.url)), ...headers } },
  )

describe('a hold on S3', () => {
  let h: Awaited<ReturnType<typeof holdOn>>
  beforeAll(async () => {
    h = await holdOn('s3')
  })
  afterAll(() => h.stop())

  it('answers method=GET and HEAD with presigned S3 URLs that work for 15 minutes', async () => {
    const blob = randomBytes(5000)
    const { digest } = await pushBlob(h.url, blob, { did: TEST_OWNER })
    for (const method of ['GET', 'HEAD'] as const) {
      const started = Date.now()
      const res = await xrpc<{
        url: string
        method: string
        expiresAt: string
      }>(
        h.url,
        GET_BLOB,
        { did: TEST_OWNER, cid: digest, method },
        { headers: await ownerAuth(h.url) },
      )
      expect(res.status).toBe(200)
      expect(res.body.method).toBe(method)
      const url = new URL(res.body.url)
      expect(url.origin).toBe(h.s3!.endpoint)
      expect(url.pathname).toBe(
        `/${h.s3!.bucket}/hold/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`,
      )
      expect(url.searchParams.get('X-Amz-Expires')).toBe('900')
      const ttl = Date.parse(res.body.expiresAt) - started
      expect(ttl).toBeGreaterThan(899_000)
      expect(ttl).toBeLessThanOrEqual(901_000)
      const got = await fetch(res.body.url, { method })
      const bytes = Buffer.from(await got.arrayBuffer())
      expect(got.status).toBe(200)
      expect(got.headers.get('content-length')).toBe(String(blob.length))
      if (method === 'GET') expect(bytes.equals(blob)).toBe(true)
    }
  })

  it('streams the bytes from S3 without method, with Range, counting a download once', async () => {
    const blob = randomBytes(200_000)
    const { digest } = await pushBlob(h.url, blob, { did: TEST_OWNER })
    const whole = await getBlob(h, { cid: digest, repo: 'streamed/app' })
    expect(whole.status).toBe(200)
    expect(Buffer.from(await whole.arrayBuffer()).equals(blob)).toBe(true)
    const part = await getBlob(
      h,
      { cid: digest, repo: 'streamed/app' },
      { range: 'bytes=100000-100099' },
    )
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe(
      `bytes 100000-100099/${blob.length}`,
    )
    expect(
      Buffer.from(await part.arrayBuffer()).equals(
        blob.subarray(100_000, 100_100),
      ),
    ).toBe(true)
    const small = await getBlob(h, { cid: digest }, { range: 'bytes=0-9' })
    expect(
      Buffer.from(await small.arrayBuffer()).equals(blob.subarray(0, 10)),
    ).toBe(true)
    await h.hold.ctx.stats.flush()
    // The resumed range is not a new download.
    expect((await getStats(h, TEST_OWNER, 'streamed/app')).pullCount).toBe(1)
    const missing = await getBlob(h, { cid: digestOf(randomBytes(8)) })
    expectXrpcError(
      { status: missing.status, body: await missing.json() },
      404,
      'BlobNotFound',
    )
  })

  it('shows storage operations, bytes stored and uploads in flight in /metrics', async () => {
    const blob = randomBytes(3000)
    const digest = digestOf(blob)
    const { uploadId } = (
      await call<{ uploadId: string }>(h, INITIATE, { digest })
    ).body
    const before = await (await fetch(`${h.url}/metrics`)).text()
    expect(before).toMatch(/^hold_uploads_in_flight 1$/m)
    const part = await uploadPart(h, uploadId, 1, blob)
    await call(h, COMPLETE, {
      uploadId,
      digest,
      parts: [{ partNumber: 1, etag: part.body.etag }],
    })
    const text = await (await fetch(`${h.url}/metrics`)).text()
    expect(text).toMatch(/^hold_uploads_in_flight 0$/m)
    expect(text).toMatch(
      /^hold_storage_operations_total\{store="s3",op="completeUpload",result="ok"\} 1$/m,
    )
    expect(text).toMatch(
      /^hold_storage_operation_duration_seconds_count\{store="s3",op="putPart"\} 1$/m,
    )
    const stored =
      /^hold_storage_bytes_stored_total\{store="s3"\} (\d+)$/m.exec(text)
    expect(Number(stored?.[1])).toBeGreaterThanOrEqual(blob.length)
  })

  it('moves download URLs to HOLD_CDN_URL after signing', async () => {
    const cdn = await holdOn('s3', { HOLD_CDN_URL: 'https://cdn.example.com' })
    try {
      const { digest } = await pushBlob(cdn.url, randomBytes(100), {
        did: TEST_OWNER,
      })
      const res = await xrpc<{ url: string }>(
        cdn.url,
        GET_BLOB,
        { did: TEST_OWNER, cid: digest, method: 'GET' },
        { headers: await ownerAuth(cdn.url) },
      )
      expect(res.body.url.startsWith('https://cdn.example.com/')).toBe(true)
      // The same URL on the S3 endpoint still verifies: the host was swapped after signing.
      const onS3 = res.body.url.replace(
        'https://cdn.example.com',
        cdn.s3!.endpoint,
      )
      const got = await fetch(onS3)
      await got.arrayBuffer()
      expect(got.status).toBe(200)
    } finally {
      await cdn.stop()
    }
  })
})

describe('an S3 outage', () => {
  it('answers 503 StorageUnavailable on blob calls and _health, while counts keep working', async () => {
    const h = await holdOn('s3')
    try {
      const health = await xrpc(h.url, '_health')
      expect(health.status).toBe(200)
      const blob = randomBytes(1000)
      const { digest } = await pushBlob(h.url, blob, {
        did: TEST_OWNER,
        repo: 'outage/app',
      })
      await h.s3!.close()
      expectXrpcError(await xrpc(h.url, '_health'), 503, 'StorageUnavailable')
      const fresh = await getBlob(h, { cid: digestOf(randomBytes(9)) })
      expectXrpcError(
        { status: fresh.status, body: await fresh.json() },
        503,
        'StorageUnavailable',
      )
      const streamed = await getBlob(h, { cid: digest })
      expectXrpcError(
        { status: streamed.status, body: await streamed.json() },
        503,
        'StorageUnavailable',
      )
      expectXrpcError(
        await call(h, INITIATE, { digest }),
        503,
        'StorageUnavailable',
      )
      await h.hold.ctx.stats.flush()
      expect((await getStats(h, TEST_OWNER, 'outage/app')).pushCount).toBe(1)
    } finally {
      await h.stop()
    }
  })
})

/** A TCP proxy to `port` that can be told to hang: to accept connections and never answer. */
const hangable = async (port: number) => {
  let hang = false
  const open = new Set<Socket>()
  const server = createServer((client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => {})
    if (hang) return
    const upstream = createConnection(port, '127.0.0.1')
    open.add(upstream)
    upstream.on('close', () => open.delete(upstream))
    upstream.on('error', () => client.destroy())
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    hang: () => {
      hang = true
      for (const socket of open) socket.destroy()
    },
    close: () => {
      for (const socket of open) socket.destroy()
      return new Promise((r) => server.close(r))
    },
  }
}

describe('a hung S3', () => {
  it('reads as down on _health within the health check timeout', async () => {
    const s3 = await startS3()
    const proxy = await hangable(Number(new URL(s3.endpoint).port))
    const h = await startHold({
      env: s3Env(s3, { AWS_ENDPOINT_URL_S3: proxy.endpoint }),
      overrides: { s3Client: { retryDelaysMs: [] } },
    })
    try {
      expect((await xrpc(h.url, '_health')).status).toBe(200)
      proxy.hang()
      const started = Date.now()
      expectXrpcError(await xrpc(h.url, '_health'), 503, 'StorageUnavailable')
      // Well before the S3 client's own 30 s silence timeout, which would answer too.
      expect(Date.now() - started).toBeLessThan(15_000)
    } finally {
      await h.stop()
      await proxy.close()
      await s3.close()
    }
  })
})

describe('the S3 start-up check', () => {
  let s3: TestS3
  beforeAll(async () => {
    s3 = await startS3()
  })
  afterAll(() => s3.close())

  it.each<[string, Record<string, string>, RegExp]>([
    [
      'a bucket that does not exist',
      { BUCKET_NAME: 'no-such-bucket' },
      /does not exist.*BUCKET_NAME/,
    ],
    [
      'an unknown access key',
      { AWS_ACCESS_KEY_ID: 'AKNOTKNOWN' },
      /AWS_ACCESS_KEY_ID/,
    ],
    [
      'a wrong secret',
      { AWS_SECRET_ACCESS_KEY: 'wrong' },
      /AWS_SECRET_ACCESS_KEY/,
    ],
  ])(
    'stops the start with one line for %s, before the data dir is touched',
    async (_, env, line) => {
      const dataDir = await tempDir()
      try {
        const err = await startHold({ env: s3Env(s3, env), dataDir }).then(
          () => undefined,
          (e: Error) => e,
        )
        expect(err?.message).toMatch(line)
        expect(err?.message).not.toContain('\n')
        expect(await readdir(dataDir)).toEqual([])
      } finally {
        await removeDir(dataDir)
      }
    },
  )
})
