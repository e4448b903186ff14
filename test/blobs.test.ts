import { createHash, randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createCid } from '@atproto/lex-data'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  getBytes,
  ownerAuth,
  pushBlob,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'

const sha256Hex = (bytes: Uint8Array) =>
  createHash('sha256').update(bytes).digest('hex')

type BlobUrl = { url: string; method: string; expiresAt: string }

/** Every file name under dir, recursively. */
const filesUnder = async (dir: string): Promise<string[]> =>
  (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))

/** getBlob with method; a PUT carries the owner's service token, as the AppView's would. */
const getBlobUrl = async (
  base: string,
  params: Record<string, string | undefined>,
) =>
  xrpc<BlobUrl & { error?: string }>(
    base,
    ids.SyncGetBlob,
    { did: OWNER, ...params },
    params.method === 'PUT' ? { headers: await ownerAuth(base) } : {},
  )

/** Plain getBlob (no method): the bytes, with any extra request headers. */
const fetchBlob = async (
  base: string,
  params: Record<string, string>,
  init: RequestInit = {},
) => {
  const url = new URL(`/xrpc/${ids.SyncGetBlob}`, base)
  for (const [k, v] of Object.entries({ did: OWNER, ...params })) {
    url.searchParams.set(k, v)
  }
  const res = await fetch(url, init)
  return {
    status: res.status,
    headers: res.headers,
    bytes: new Uint8Array(await res.arrayBuffer()),
  }
}

const jsonOf = (bytes: Uint8Array) =>
  JSON.parse(Buffer.from(bytes).toString('utf8')) as {
    error: string
    message: string
  }

describe('blobs: push, serve, signed URLs', () => {
  let h: TestHold
  let dataDir: string
  const big = randomBytes(3 * 1024 * 1024 + 123)
  const empty = new Uint8Array(0)
  let bigDigest: string
  let emptyDigest: string

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
    dataDir = h.dataDir
    const a = await pushBlob(h.url, big, { did: OWNER })
    const b = await pushBlob(h.url, empty, { did: OWNER })
    expect([a.status, b.status]).toEqual([201, 201])
    bigDigest = a.digest
    emptyDigest = b.digest
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(dataDir)
  })

  it('serves a pushed multi-megabyte blob byte for byte with length and nosniff headers', async () => {
    const res = await fetchBlob(h.url, { cid: bigDigest })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-length')).toBe(String(big.length))
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('content-type')).toBe('application/octet-stream')
    expect(res.bytes.length).toBe(big.length)
    expect(Buffer.compare(Buffer.from(res.bytes), big)).toBe(0)
  })

  it('serves a pushed 0-byte blob as an empty 200 body', async () => {
    expect(emptyDigest).toBe(`sha256:${sha256Hex(empty)}`)
    const res = await fetchBlob(h.url, { cid: emptyDigest })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-length')).toBe('0')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.bytes.length).toBe(0)
  })

  it('stores the blob content-addressed under the data dir with no temp file left', async () => {
    const files = await filesUnder(join(dataDir, 'blobs'))
    const hex = bigDigest.slice('sha256:'.length)
    expect(files).toContain(
      join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex),
    )
    expect(await filesUnder(join(dataDir, 'blobs', 'tmp'))).toEqual([])
  })

  it('answers HTTP HEAD on getBlob with the length and no body', async () => {
    const res = await fetchBlob(h.url, { cid: bigDigest }, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-length')).toBe(String(big.length))
    expect(res.bytes.length).toBe(0)
  })

  it('answers Range requests with 206 and the right slices', async () => {
    const cases: [string, number, number][] = [
      ['bytes=0-9', 0, 9],
      ['bytes=100-', 100, big.length - 1],
      ['bytes=-5', big.length - 5, big.length - 1],
      ['bytes=1000-1999', 1000, 1999],
      [`bytes=10-${big.length + 50}`, 10, big.length - 1],
    ]
    for (const [range, start, end] of cases) {
      const res = await fetchBlob(
        h.url,
        { cid: bigDigest },
        { headers: { range } },
      )
      expect(res.status, range).toBe(206)
      expect(res.headers.get('content-range'), range).toBe(
        `bytes ${start}-${end}/${big.length}`,
      )
      expect(res.headers.get('content-length'), range).toBe(
        String(end - start + 1),
      )
      expect(
        Buffer.compare(Buffer.from(res.bytes), big.subarray(start, end + 1)),
        range,
      ).toBe(0)
    }
  })

  it('answers an unsatisfiable range with 416 and a JSON error', async () => {
    for (const range of [`bytes=${big.length}-`, 'bytes=-0', 'bytes=20-10']) {
      const res = await fetchBlob(
        h.url,
        { cid: bigDigest },
        { headers: { range } },
      )
      expect(res.status, range).toBe(416)
      expect(res.headers.get('content-type')).toMatch(/json/)
      expect(jsonOf(res.bytes).error).toBe('InvalidRange')
    }
    const onEmpty = await fetchBlob(
      h.url,
      { cid: emptyDigest },
      { headers: { range: 'bytes=0-' } },
    )
    expect(onEmpty.status).toBe(416)
  })

  it('answers method=GET with a signed URL under the public URL that serves the same bytes, with HEAD and Range', async () => {
    const before = Date.now()
    const res = await getBlobUrl(h.url, { cid: bigDigest, method: 'GET' })
    expect(res.status).toBe(200)
    expect(Object.keys(res.body).sort()).toEqual(['expiresAt', 'method', 'url'])
    expect(res.body.method).toBe('GET')
    const valid = h.hold.ctx.lexicons.validate(
      'io.atcr.hold.defs#blobUrl',
      res.body,
    )
    expect(valid.success).toBe(true)
    const publicUrl = h.hold.ctx.cfg.publicUrl.replace(/\/$/, '')
    expect(res.body.url.startsWith(`${publicUrl}/`)).toBe(true)
    const expires = Date.parse(res.body.expiresAt)
    expect(expires).toBeGreaterThan(before)
    expect(expires).toBeLessThanOrEqual(before + 60 * 60 * 1000)

    const got = await fetch(res.body.url)
    expect(got.status).toBe(200)
    expect(got.headers.get('x-content-type-options')).toBe('nosniff')
    const bytes = Buffer.from(await got.arrayBuffer())
    expect(Buffer.compare(bytes, big)).toBe(0)

    const head = await fetch(res.body.url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(big.length))
    expect((await head.arrayBuffer()).byteLength).toBe(0)

    const part = await fetch(res.body.url, { headers: { range: 'bytes=5-14' } })
    expect(part.status).toBe(206)
    expect(
      Buffer.compare(
        Buffer.from(await part.arrayBuffer()),
        big.subarray(5, 15),
      ),
    ).toBe(0)
  })

  it('answers method=HEAD for a stored blob with a URL that HEAD works on and GET does not', async () => {
    const res = await getBlobUrl(h.url, { cid: bigDigest, method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(res.body.method).toBe('HEAD')
    const head = await fetch(res.body.url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(big.length))
    const get = await fetch(res.body.url)
    expect(get.status).toBe(403)
    await get.arrayBuffer()
  })

  it('answers 404 BlobNotFound for an unknown blob with method=GET, method=HEAD and plain getBlob', async () => {
    const unknown = `sha256:${sha256Hex(randomBytes(16))}`
    for (const method of ['GET', 'HEAD']) {
      const res = await getBlobUrl(h.url, { cid: unknown, method })
      expect(res.status, method).toBe(404)
      expect(res.body.error).toBe('BlobNotFound')
      expect(res.body.url).toBeUndefined()
    }
    const plain = await fetchBlob(h.url, { cid: unknown })
    expect(plain.status).toBe(404)
    expect(jsonOf(plain.bytes).error).toBe('BlobNotFound')
    const plainHead = await fetchBlob(
      h.url,
      { cid: unknown },
      { method: 'HEAD' },
    )
    expect(plainHead.status).toBe(404)
  })

  it('answers 400 InvalidRequest for a cid that is not a sha256 digest or CIDv1', async () => {
    for (const cid of [
      'sha256:../../etc/passwd',
      bigDigest.toUpperCase(),
      bigDigest.slice(0, 20),
      `sha512:${'a'.repeat(64)}`,
      'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG',
    ]) {
      const res = await xrpc(h.url, ids.SyncGetBlob, {
        did: OWNER,
        cid,
      })
      expect(res.status, cid).toBe(400)
      expect(res.body.error).toBe('InvalidRequest')
    }
    const badMethod = await getBlobUrl(h.url, {
      cid: bigDigest,
      method: 'POST',
    })
    expect(badMethod.status).toBe(400)
    const noDid = await xrpc(h.url, ids.SyncGetBlob, {
      cid: bigDigest,
    })
    expect(noDid.status).toBe(400)
  })

  it('refuses a PUT whose sha256 differs from the digest, stores nothing and leaves no file', async () => {
    const meant = randomBytes(64 * 1024)
    const sent = randomBytes(64 * 1024)
    const meantHex = sha256Hex(meant)
    const sentHex = sha256Hex(sent)
    const signed = await getBlobUrl(h.url, {
      cid: `sha256:${meantHex}`,
      method: 'PUT',
    })
    expect(signed.status).toBe(200)
    expect(signed.body.method).toBe('PUT')
    const put = await fetch(signed.body.url, { method: 'PUT', body: sent })
    expect(put.status).toBe(400)
    const err = (await put.json()) as { error: string; message: string }
    expect(err.error).toBe('DigestMismatch')
    expect(err.message).toContain(meantHex)

    for (const hex of [meantHex, sentHex]) {
      const res = await fetchBlob(h.url, { cid: `sha256:${hex}` })
      expect(res.status).toBe(404)
    }
    const files = (await filesUnder(join(dataDir, 'blobs'))).map((f) =>
      f.split('/').pop(),
    )
    expect(files).not.toContain(meantHex)
    expect(files).not.toContain(sentHex)
    expect(await filesUnder(join(dataDir, 'blobs', 'tmp'))).toEqual([])

    // The same URL still takes the right content.
    const retry = await fetch(signed.body.url, { method: 'PUT', body: meant })
    expect(retry.status).toBe(201)
    const stored = await fetchBlob(h.url, { cid: `sha256:${meantHex}` })
    expect(Buffer.compare(Buffer.from(stored.bytes), meant)).toBe(0)
  })

  it('refuses a tampered signed URL with 403 (sig, repo, did, method, exp, blob)', async () => {
    const other = await pushBlob(h.url, randomBytes(100), { did: OWNER })
    const otherHex = other.digest.slice('sha256:'.length)
    const signed = await getBlobUrl(h.url, {
      cid: bigDigest,
      method: 'GET',
      repo: 'myapp',
    })
    expect(signed.status).toBe(200)
    const original = new URL(signed.body.url)
    expect((await fetch(original, { method: 'HEAD' })).status).toBe(200)
    // Fetching a download URL never counts, so it names no repo: a counted call and one
    // without `repo` are given the same URL.
    expect(original.searchParams.has('repo')).toBe(false)
    const uncounted = await getBlobUrl(h.url, { cid: bigDigest, method: 'GET' })
    expect(uncounted.body.url).toBe(signed.body.url)

    const tamper = (fn: (u: URL) => void) => {
      const u = new URL(original)
      fn(u)
      return u
    }
    const sig = original.searchParams.get('sig')!
    const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)
    const exp = Number(original.searchParams.get('exp'))
    const cases: [string, URL][] = [
      ['changed sig', tamper((u) => u.searchParams.set('sig', flipped))],
      ['no sig', tamper((u) => u.searchParams.delete('sig'))],
      ['added repo', tamper((u) => u.searchParams.set('repo', 'other'))],
      [
        'changed did',
        tamper((u) =>
          u.searchParams.set('did', 'did:plc:someoneelse2345678901'),
        ),
      ],
      ['changed method', tamper((u) => u.searchParams.set('method', 'HEAD'))],
      [
        'later exp',
        tamper((u) => u.searchParams.set('exp', String(exp + 3600))),
      ],
      [
        'earlier exp',
        tamper((u) => u.searchParams.set('exp', String(exp - 1))),
      ],
      [
        'other blob',
        tamper((u) => {
          u.pathname = u.pathname.replace(/[0-9a-f]{64}$/, otherHex)
        }),
      ],
    ]
    for (const [name, url] of cases) {
      const res = await fetch(url, { method: 'HEAD' })
      expect(res.status, name).toBe(403)
      const get = await fetch(url)
      expect(get.status, name).toBe(403)
      expect(((await get.json()) as { error: string }).error, name).toBe(
        'Forbidden',
      )
    }
    // A URL naming PUT (with the GET signature) cannot upload either.
    const asPut = tamper((u) => u.searchParams.set('method', 'PUT'))
    const put = await fetch(asPut, { method: 'PUT', body: big })
    expect(put.status).toBe(403)
    await put.arrayBuffer()
  })

  it('refuses an expired signed URL with 403', async () => {
    const hex = bigDigest.slice('sha256:'.length)
    const { url } = h.hold.ctx.urlSigner.sign(
      { method: 'GET', hex, did: OWNER, repo: undefined },
      Date.now() - 60 * 60 * 1000,
    )
    const res = await fetch(url)
    expect(res.status).toBe(403)
    expect(((await res.json()) as { error: string }).error).toBe('ExpiredUrl')
    // The same grant signed now works, so the refusal is the expiry.
    const fresh = h.hold.ctx.urlSigner.sign({
      method: 'GET',
      hex,
      did: OWNER,
      repo: undefined,
    })
    const ok = await fetch(fresh.url, { method: 'HEAD' })
    expect(ok.status).toBe(200)
  })

  it('does not let a URL signed for GET upload, nor a URL signed for PUT download', async () => {
    const bytes = randomBytes(2048)
    const hex = sha256Hex(bytes)
    // GET URLs exist only for stored blobs; sign one for a blob that is not stored.
    const { url: getUrl } = h.hold.ctx.urlSigner.sign({
      method: 'GET',
      hex,
      did: OWNER,
      repo: undefined,
    })
    const put = await fetch(getUrl, { method: 'PUT', body: bytes })
    expect(put.status).toBe(403)
    await put.arrayBuffer()
    expect((await fetchBlob(h.url, { cid: `sha256:${hex}` })).status).toBe(404)

    const stored = await getBlobUrl(h.url, { cid: bigDigest, method: 'GET' })
    const putOnStored = await fetch(stored.body.url, {
      method: 'PUT',
      body: big,
    })
    expect(putOnStored.status).toBe(403)
    await putOnStored.arrayBuffer()

    const putSigned = await getBlobUrl(h.url, { cid: bigDigest, method: 'PUT' })
    const get = await fetch(putSigned.body.url)
    expect(get.status).toBe(403)
    await get.arrayBuffer()
  })

  it('serves the same blob when the cid is the CIDv1 (raw and dag-cbor) of its sha256', async () => {
    const digest = Buffer.from(bigDigest.slice('sha256:'.length), 'hex')
    for (const codec of [0x55, 0x71]) {
      const cid = createCid(codec, 0x12, digest).toString()
      const res = await fetchBlob(h.url, { cid })
      expect(res.status).toBe(200)
      expect(Buffer.compare(Buffer.from(res.bytes), big)).toBe(0)
      const signed = await getBlobUrl(h.url, { cid, method: 'GET' })
      expect(signed.status).toBe(200)
      const viaUrl = Buffer.from(
        await (await fetch(signed.body.url)).arrayBuffer(),
      )
      expect(Buffer.compare(viaUrl, big)).toBe(0)
    }
    // A blob pushed by CID is served by its OCI digest.
    const bytes = randomBytes(5000)
    const cid = createCid(
      0x55,
      0x12,
      createHash('sha256').update(bytes).digest(),
    ).toString()
    const signed = await getBlobUrl(h.url, { cid, method: 'PUT' })
    expect(signed.status).toBe(200)
    const put = await fetch(signed.body.url, { method: 'PUT', body: bytes })
    expect(put.status).toBe(201)
    const res = await getBytes(h.url, ids.SyncGetBlob, {
      did: OWNER,
      cid: `sha256:${sha256Hex(bytes)}`,
    })
    expect(Buffer.compare(Buffer.from(res.bytes), bytes)).toBe(0)
  })

  it('keeps blobs across a restart of the hold', async () => {
    const before = await getBlobUrl(h.url, { cid: bigDigest, method: 'GET' })
    expect(before.status).toBe(200)
    const port = h.port
    // Stop while a download is in flight: the download completes and the stop does not wait
    // for the keep-alive timeout.
    const inFlight = await fetch(
      `${h.url}/xrpc/${ids.SyncGetBlob}?did=${OWNER}&cid=${bigDigest}`,
    )
    expect(inFlight.status).toBe(200)
    const started = Date.now()
    const stopped = h.stop().then(() => Date.now() - started)
    const body = Buffer.from(await inFlight.arrayBuffer())
    expect(Buffer.compare(body, big)).toBe(0)
    expect(await stopped).toBeLessThan(5000)
    h = await startHold({
      dataDir,
      port,
      env: { HOLD_STATS_FLUSH_MS: '3600000' },
    })
    const res = await fetchBlob(h.url, { cid: bigDigest })
    expect(res.status).toBe(200)
    expect(Buffer.compare(Buffer.from(res.bytes), big)).toBe(0)
    const zero = await fetchBlob(h.url, { cid: emptyDigest })
    expect(zero.status).toBe(200)
    expect(zero.bytes.length).toBe(0)
    // A URL signed before the restart still verifies: the URL secret is kept in the data dir.
    const old = await fetch(before.body.url)
    expect(old.status).toBe(200)
    expect(Buffer.compare(Buffer.from(await old.arrayBuffer()), big)).toBe(0)
  })
})
