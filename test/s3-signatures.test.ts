import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3BlobStore } from '../src/blobs/s3-store.ts'
import { SigV4 } from '../src/blobs/s3/sigv4.ts'
import type { ListedPart } from '../src/blobs/store.ts'
import {
  bodyOf,
  expectBlobError,
  openStore,
  sha256,
  stored,
  type TestStore,
} from './_stores.ts'

// The URLs the hold hands out are checked by the S3 server itself, not by the hold: these
// tests use the patched s3rver, which verifies SigV4 as S3 does.

const ALICE = 'did:plc:alice000000000000000000'

const codeOf = async (res: Response) =>
  /<Code>(.*?)<\/Code>/.exec(await res.text())?.[1]

describe('presigned URLs, as the S3 server sees them', () => {
  let t: TestStore
  let store: S3BlobStore
  const blob = randomBytes(20_000)
  const hex = sha256(blob)

  beforeAll(async () => {
    t = await openStore('s3')
    store = t.store as S3BlobStore
    await store.put(hex, bodyOf(blob), 1 << 20, blob.length)
  })
  afterAll(() => t.close())

  it('are refused when tampered with', async () => {
    const { url } = store.directUrl(hex, 'GET')
    const other = sha256(randomBytes(8))
    const variants = [
      url.replaceAll(hex, other),
      url.replace('X-Amz-Expires=900', 'X-Amz-Expires=901'),
      url.replace(
        /X-Amz-Signature=([0-9a-f])/,
        (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`,
      ),
      `${url}&response-content-type=text%2Fhtml`,
    ]
    for (const tampered of variants) {
      const res = await fetch(tampered)
      expect(res.status, tampered).toBe(403)
      expect(await codeOf(res)).toBe('SignatureDoesNotMatch')
    }
  })

  it('are refused once expired', async () => {
    const { url, expiresAt } = store.directUrl(hex, 'GET', Date.now() - 901_000)
    expect(Date.parse(expiresAt)).toBeLessThan(Date.now())
    const res = await fetch(url)
    expect(res.status).toBe(403)
    expect(await codeOf(res)).toBe('AccessDenied')
  })

  it('are refused for another method, and change nothing', async () => {
    const { url } = store.directUrl(hex, 'GET')
    expect(
      (await fetch(url, { method: 'PUT', body: 'overwrite' })).status,
    ).toBe(403)
    expect((await fetch(url, { method: 'DELETE' })).status).toBe(403)
    expect((await fetch(url, { method: 'HEAD' })).status).toBe(403)
    const head = store.directUrl(hex, 'HEAD')
    expect((await fetch(head.url)).status).toBe(403)
    expect(await stored(store, hex)).toEqual(blob)
  })

  it('are refused when signed with another secret', async () => {
    const forged = new SigV4({ ...t.s3!.target, secretAccessKey: 'guessed' })
    const key = new URL(store.directUrl(hex, 'GET').url).pathname.slice(
      `/${t.s3!.bucket}/`.length,
    )
    const res = await fetch(forged.presign('GET', key, 900))
    expect(res.status).toBe(403)
    expect(await codeOf(res)).toBe('SignatureDoesNotMatch')
  })

  it('are needed: the bucket refuses unsigned requests', async () => {
    const { url } = store.directUrl(hex, 'GET')
    const bare = new URL(url)
    bare.search = ''
    for (const method of ['GET', 'HEAD', 'PUT']) {
      const res = await fetch(bare, {
        method,
        body: method === 'PUT' ? 'x' : undefined,
      })
      expect(res.status, method).toBe(403)
    }
    expect((await fetch(`${t.s3!.endpoint}/${t.s3!.bucket}`)).status).toBe(403)
  })
})

describe('presigned part URLs', () => {
  let t: TestStore
  beforeAll(async () => {
    t = await openStore('s3')
  })
  afterAll(() => t.close())

  const putTo = (url: string, bytes: Buffer) =>
    fetch(url, { method: 'PUT', body: new Uint8Array(bytes) })

  it('upload parts straight to S3, out of order and retried, then complete', async () => {
    const parts = [randomBytes(5000), randomBytes(5000), randomBytes(1234)]
    const blob = Buffer.concat(parts)
    const hex = sha256(blob)
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    const listed: ListedPart[] = []
    for (const [n, bytes] of [
      [3, parts[2]],
      [1, randomBytes(5000)],
      [2, parts[1]],
      [1, parts[0]],
    ] as const) {
      const part = (await t.uploads.partUrl(ALICE, uploadId, n))!
      expect(part.method).toBe('PUT')
      const res = await putTo(part.url, bytes)
      expect(res.status).toBe(200)
      listed[n - 1] = { partNumber: n, etag: res.headers.get('etag')! }
    }
    // A part sent through the hold as well: the digest is read back either way.
    const { etag } = await t.uploads.putPart(
      ALICE,
      uploadId,
      2,
      bodyOf(parts[1]),
      parts[1].length,
    )
    listed[1] = { partNumber: 2, etag }
    await t.uploads.complete(ALICE, uploadId, hex, listed)
    expect(await stored(t.store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('are bound to their upload and part number, and die with the upload', async () => {
    const hex = sha256(randomBytes(8))
    const a = await t.uploads.initiate({ caller: ALICE, hex })
    const b = await t.uploads.initiate({ caller: ALICE, hex })
    const url = (await t.uploads.partUrl(ALICE, a.uploadId, 1))!.url
    const bytes = randomBytes(1000)
    const other = new URL((await t.uploads.partUrl(ALICE, b.uploadId, 1))!.url)
    const swapped = new URL(url)
    swapped.searchParams.set('uploadId', other.searchParams.get('uploadId')!)
    expect(
      (await putTo(url.replace('partNumber=1', 'partNumber=2'), bytes)).status,
    ).toBe(403)
    expect((await putTo(swapped.toString(), bytes)).status).toBe(403)
    const ok = await putTo(url, bytes)
    expect(ok.status).toBe(200)
    expect(ok.headers.get('etag')).toBe(
      `"${createHash('md5').update(bytes).digest('hex')}"`,
    )
    await t.uploads.abort(ALICE, a.uploadId)
    const late = await putTo(url, bytes)
    expect(late.status).toBe(404)
    expect(await codeOf(late)).toBe('NoSuchUpload')
    await t.uploads.abort(ALICE, b.uploadId)
    expect(await t.leftovers()).toEqual([])
  })

  it('are handed out only to the caller who started the upload', async () => {
    const { uploadId } = await t.uploads.initiate({
      caller: ALICE,
      hex: sha256(randomBytes(8)),
    })
    await expectBlobError(
      () => t.uploads.partUrl('did:plc:mallory', uploadId, 1),
      'InvalidUploadId',
    )
    await t.uploads.abort(ALICE, uploadId)
  })
})
