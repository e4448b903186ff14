import { createHmac, randomBytes } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import http from 'node:http'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import {
  GET_BLOB,
  blobFiles,
  expectXrpcError,
  filesUnder,
  getStats,
  sha256Hex,
} from './_access.ts'
import {
  TEST_OWNER,
  ownerAuth,
  removeDir,
  sleep,
  startHold,
  waitFor,
  xrpc,
  type TestHold,
} from './_util.ts'

/** An upload URL from getBlob method=PUT, as the owner, for repository `repo`. */
const uploadUrl = async (
  h: TestHold,
  bytes: Uint8Array,
  repo = 'replay',
): Promise<string> => {
  const res = await xrpc<{ url: string }>(
    h.url,
    GET_BLOB,
    {
      did: TEST_OWNER,
      cid: `sha256:${sha256Hex(bytes)}`,
      method: 'PUT',
      repo,
    },
    { headers: await ownerAuth(h.url) },
  )
  expect(res.status).toBe(200)
  return res.body.url
}

const put = async (url: string, body: Uint8Array) => {
  const res = await fetch(url, { method: 'PUT', body })
  const text = await res.text()
  return {
    status: res.status,
    body: JSON.parse(text) as { error?: string; message?: string },
  }
}

/** A PUT whose body is sent in two parts: `rest()` sends the remainder, `cut()` drops it. */
const slowPut = (url: string, body: Buffer, firstBytes: number) => {
  const u = new URL(url)
  let resolve!: (v: { status: number; text: string }) => void
  const done = new Promise<{ status: number; text: string }>(
    (r) => (resolve = r),
  )
  const req = http.request(
    {
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      method: 'PUT',
      headers: { 'content-length': body.length },
      agent: false,
    },
    (res) => {
      let text = ''
      res.on('data', (d) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    },
  )
  req.on('error', () => resolve({ status: 0, text: '' }))
  req.write(body.subarray(0, firstBytes))
  return {
    done,
    rest: () => req.end(body.subarray(firstBytes)),
    cut: () => req.destroy(),
  }
}

describe('signed upload URLs are used once', () => {
  const holds: TestHold[] = []
  const dirs: string[] = []
  const start = async (restart?: TestHold) => {
    const h = await startHold({
      env: { HOLD_STATS_FLUSH_MS: '3600000' },
      dataDir: restart?.dataDir,
      port: restart?.port,
    })
    holds.push(h)
    if (!restart) dirs.push(h.dataDir)
    return h
  }
  afterEach(async () => {
    for (const h of holds.splice(0)) await h.stop()
  })
  afterAll(async () => {
    for (const d of dirs) await removeDir(d)
  })

  it('a second PUT with the same URL is 409 UrlAlreadyUsed: nothing stored, nothing counted', async () => {
    const h = await start()
    const bytes = randomBytes(4096)
    const url = await uploadUrl(h, bytes)
    expect((await put(url, bytes)).status).toBe(201)
    const [file] = await blobFiles(h)
    const before = await stat(file)
    const pushes = h.hold.ctx.stats.totals.pushes

    for (let i = 0; i < 3; i++) {
      const again = await put(url, bytes)
      expectXrpcError(again, 409, 'UrlAlreadyUsed')
    }
    const after = await stat(file)
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs])
    expect(await filesUnder(join(h.dataDir, 'blobs', 'tmp'))).toEqual([])
    expect(h.hold.ctx.stats.totals.pushes).toBe(pushes)
    expect((await getStats(h, TEST_OWNER, 'replay')).pushCount).toBe(1)
  })

  it('stays used across a restart', async () => {
    const first = await start()
    const bytes = randomBytes(1024)
    const url = await uploadUrl(first, bytes)
    expect((await put(url, bytes)).status).toBe(201)
    await first.stop()
    holds.splice(holds.indexOf(first), 1)

    const h = await start(first)
    expectXrpcError(await put(url, bytes), 409, 'UrlAlreadyUsed')
    expect((await getStats(h, TEST_OWNER, 'replay')).pushCount).toBe(1)
  })

  it('of many PUTs at once through one URL, exactly one stores and counts', async () => {
    const h = await start()
    const bytes = randomBytes(64 * 1024)
    const url = await uploadUrl(h, bytes, 'race')
    const results = await Promise.all(
      Array.from({ length: 8 }, () => put(url, bytes)),
    )
    const statuses = results.map((r) => r.status).sort()
    expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409])
    expect((await getStats(h, TEST_OWNER, 'race')).pushCount).toBe(1)
  })

  it('a PUT while another through the same URL is still sending is refused at once, and the first completes', async () => {
    const h = await start()
    const bytes = randomBytes(256 * 1024)
    const url = await uploadUrl(h, bytes, 'overlap')
    const first = slowPut(url, bytes, 1000)
    // The first upload has begun once its request is in flight at the hold.
    await waitFor(() => h.hold.ctx.metrics.requestsInFlight > 0)
    const second = await put(url, bytes)
    expectXrpcError(second, 409, 'UrlAlreadyUsed')
    first.rest()
    expect((await first.done).status).toBe(201)
    expect((await getStats(h, TEST_OWNER, 'overlap')).pushCount).toBe(1)
  })

  it('a failed upload leaves the URL usable: a retry after a digest mismatch or a cut-off body stores and counts once', async () => {
    const h = await start()
    const bytes = randomBytes(128 * 1024)
    const url = await uploadUrl(h, bytes, 'retry')

    expectXrpcError(await put(url, randomBytes(100)), 400, 'DigestMismatch')

    const cut = slowPut(url, bytes, 1000)
    await waitFor(() => h.hold.ctx.metrics.requestsInFlight > 0)
    await sleep(50)
    cut.cut()
    await cut.done
    // The cut-off upload has let go of the URL once its request is over.
    await waitFor(() => h.hold.ctx.metrics.requestsInFlight === 0)

    expect(await blobFiles(h)).toEqual([])
    expect((await put(url, bytes)).status).toBe(201)
    expectXrpcError(await put(url, bytes), 409, 'UrlAlreadyUsed')
    expect((await getStats(h, TEST_OWNER, 'retry')).pushCount).toBe(1)
  })

  it('each URL getBlob issues is a grant of its own, even for the same blob in the same second', async () => {
    const h = await start()
    const bytes = randomBytes(512)
    const [a, b] = await Promise.all([
      uploadUrl(h, bytes, 'twice'),
      uploadUrl(h, bytes, 'twice'),
    ])
    expect(a).not.toBe(b)
    expect((await put(a, bytes)).status).toBe(201)
    expect((await put(b, bytes)).status).toBe(201)
    expect((await getStats(h, TEST_OWNER, 'twice')).pushCount).toBe(2)
  })

  it('an upload URL signed before URLs carried a nonce still works, once', async () => {
    const h = await start()
    const bytes = randomBytes(300)
    const hex = sha256Hex(bytes)
    const secret = Buffer.from(
      (await readFile(join(h.dataDir, 'blob-url-secret.hex'), 'utf8')).trim(),
      'hex',
    )
    const exp = Math.floor(Date.now() / 1000) + 600
    const sig = createHmac('sha256', secret)
      .update(['v1', 'PUT', hex, TEST_OWNER, 'old', TEST_OWNER, exp].join('\n'))
      .digest('base64url')
    const q = new URLSearchParams({
      method: 'PUT',
      did: TEST_OWNER,
      repo: 'old',
      caller: TEST_OWNER,
      exp: String(exp),
      sig,
    })
    const url = `${h.url}/blobs/sha256/${hex}?${q}`
    expect((await put(url, bytes)).status).toBe(201)
    expectXrpcError(await put(url, bytes), 409, 'UrlAlreadyUsed')
    expect((await getStats(h, TEST_OWNER, 'old')).pushCount).toBe(1)
  })

  it('a nonce cannot be removed or changed', async () => {
    const h = await start()
    const bytes = randomBytes(300)
    const url = new URL(await uploadUrl(h, bytes))
    expect(url.searchParams.get('nonce')).toMatch(/^[\w-]{16}$/)
    const without = new URL(url)
    without.searchParams.delete('nonce')
    const changed = new URL(url)
    changed.searchParams.set('nonce', 'AAAAAAAAAAAAAAAA')
    for (const u of [without, changed]) {
      expectXrpcError(await put(u.toString(), bytes), 403, 'Forbidden')
    }
    expect(await blobFiles(h)).toEqual([])
  })
})
