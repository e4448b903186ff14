import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ListedPart } from '../src/blobs/store.ts'
import { parseUploadDigest } from '../src/blobs/uploads.ts'
import {
  bodyOf,
  expectBlobError,
  openStore,
  sha256,
  STORE_KINDS,
  stored,
  type TestStore,
} from './_stores.ts'

const ALICE = 'did:plc:alice000000000000000000'
const MALLORY = 'did:plc:mallory0000000000000000'

/** A blob cut into `n` parts of `partSize` bytes (the last one shorter). */
const blobOfParts = (n: number, partSize: number) => {
  const blob = randomBytes(partSize * n - Math.floor(partSize / 3))
  const parts = Array.from({ length: n }, (_, i) =>
    blob.subarray(i * partSize, (i + 1) * partSize),
  )
  return { blob, hex: sha256(blob), parts }
}

describe.each(STORE_KINDS)('multipart uploads on %s', (kind) => {
  let t: TestStore
  beforeAll(async () => {
    t = await openStore(kind)
  })
  afterAll(() => t.close())

  const start = (hex: string, caller = ALICE) =>
    t.uploads.initiate({ caller, hex, did: ALICE, repo: 'app' })

  const send = async (
    uploadId: string,
    n: number,
    bytes: Buffer,
    declared = true,
  ): Promise<ListedPart> => {
    const { etag } = await t.uploads.putPart(
      ALICE,
      uploadId,
      n,
      bodyOf(bytes),
      declared ? bytes.length : undefined,
    )
    return { partNumber: n, etag }
  }

  it.each([1, 3, 100])(
    'assembles %i parts sent through the hold, and ends the upload',
    async (n) => {
      const { blob, hex, parts } = blobOfParts(n, 3000)
      const { uploadId } = await start(hex)
      const listed = []
      for (let i = 0; i < n; i++) {
        listed.push(await send(uploadId, i + 1, parts[i], i % 2 === 0))
      }
      const done = await t.uploads.complete(ALICE, uploadId, hex, listed)
      expect(done).toEqual({ hex, size: blob.length, did: ALICE, repo: 'app' })
      expect(await stored(t.store, hex)).toEqual(blob)
      expect(await t.leftovers()).toEqual([])
      await expectBlobError(
        t.uploads.complete(ALICE, uploadId, hex, listed),
        'InvalidUploadId',
      )
    },
  )

  it('takes parts out of order, at the same time, and retried', async () => {
    const { blob, hex, parts } = blobOfParts(6, 4000)
    const { uploadId } = await start(hex)
    const etags: ListedPart[] = []
    etags[5] = await send(uploadId, 6, parts[5])
    // A first version of part 1 with the wrong bytes, replaced below.
    etags[0] = await send(uploadId, 1, randomBytes(4000))
    ;[etags[3], etags[2], etags[1]] = await Promise.all([
      send(uploadId, 4, parts[3]),
      send(uploadId, 3, parts[2], false),
      send(uploadId, 2, parts[1]),
    ])
    etags[4] = await send(uploadId, 5, parts[4])
    etags[0] = await send(uploadId, 1, parts[0])
    // Part 3 again, the same bytes: the latest ETag is the one that counts.
    etags[2] = await send(uploadId, 3, parts[2])
    await t.uploads.complete(ALICE, uploadId, hex, etags.reverse())
    expect(await stored(t.store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('assembles only the parts listed, gaps allowed (as S3 does)', async () => {
    const { parts } = blobOfParts(3, 2000)
    const blob = Buffer.concat([parts[0], parts[2]])
    const hex = sha256(blob)
    const { uploadId } = await start(hex)
    const p1 = await send(uploadId, 1, parts[0])
    await send(uploadId, 2, parts[1])
    const p3 = await send(uploadId, 3, parts[2])
    await t.uploads.complete(ALICE, uploadId, hex, [p1, p3])
    expect(await stored(t.store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('refuses part numbers outside 1-10000', async () => {
    const { uploadId } = await start(sha256(randomBytes(8)))
    for (const n of [0, 10001, -1, 1.5, '1', undefined]) {
      await expectBlobError(
        t.uploads.putPart(ALICE, uploadId, n, bodyOf(randomBytes(10)), 10),
        'InvalidPartNumber',
      )
      await expectBlobError(
        () => t.uploads.partUrl(ALICE, uploadId, n),
        'InvalidPartNumber',
      )
    }
    await t.uploads.putPart(ALICE, uploadId, 10000, bodyOf(randomBytes(5)), 5)
    await t.uploads.abort(ALICE, uploadId)
  })

  it("answers InvalidUploadId for an unknown upload and for another caller's", async () => {
    const { uploadId } = await start(sha256(randomBytes(8)))
    const part = await send(uploadId, 1, randomBytes(100))
    for (const [caller, id] of [
      [ALICE, 'no-such-upload'],
      [ALICE, ''],
      [ALICE, 'x'.repeat(300)],
      [MALLORY, uploadId],
    ]) {
      const hex = sha256(randomBytes(8))
      await expectBlobError(
        () => t.uploads.partUrl(caller, id, 1),
        'InvalidUploadId',
      )
      await expectBlobError(
        t.uploads.putPart(caller, id, 1, bodyOf(randomBytes(10)), 10),
        'InvalidUploadId',
      )
      await expectBlobError(
        t.uploads.complete(caller, id, hex, [part]),
        'InvalidUploadId',
      )
      await expectBlobError(t.uploads.abort(caller, id), 'InvalidUploadId')
    }
    // Mallory's tries changed nothing: Alice's upload is whole.
    const bytes = randomBytes(100)
    const again = await send(uploadId, 1, bytes)
    await t.uploads.complete(ALICE, uploadId, sha256(bytes), [again])
    expect(await stored(t.store, sha256(bytes))).toEqual(bytes)
  })

  it('answers MissingParts for a part not sent or an ETag not its latest, and stays open', async () => {
    const { blob, hex, parts } = blobOfParts(3, 2000)
    const { uploadId } = await start(hex)
    const p1 = await send(uploadId, 1, parts[0])
    const p2 = await send(uploadId, 2, parts[1])
    const stale = await send(uploadId, 3, randomBytes(500))
    const p3 = await send(uploadId, 3, parts[2])
    const cases: unknown[] = [
      [p1, p2, stale],
      [p1, p2, { partNumber: 3, etag: 'nonsense' }],
      [p1, p2, p3, { partNumber: 4, etag: p3.etag }],
      [p1, p2, p2],
      [],
      'parts',
      [p1, p2, { partNumber: 0, etag: p3.etag }],
    ]
    for (const listed of cases) {
      await expectBlobError(
        t.uploads.complete(ALICE, uploadId, hex, listed),
        'MissingParts',
      )
    }
    expect(await t.store.size(hex)).toBeNull()
    await t.uploads.complete(ALICE, uploadId, hex, [p1, p2, p3])
    expect(await stored(t.store, hex)).toEqual(blob)
  })

  it("answers MissingParts for a part of another upload's", async () => {
    const { hex, parts } = blobOfParts(2, 2000)
    const a = await start(hex)
    const b = await start(hex)
    const a1 = await send(a.uploadId, 1, parts[0])
    const b2 = await send(b.uploadId, 2, parts[1])
    await expectBlobError(
      t.uploads.complete(ALICE, a.uploadId, hex, [a1, b2]),
      'MissingParts',
    )
    await t.uploads.abort(ALICE, a.uploadId)
    await t.uploads.abort(ALICE, b.uploadId)
    expect(await t.leftovers()).toEqual([])
  })

  it('answers InvalidDigest when the parts hash to another digest, and stores nothing', async () => {
    const { hex, parts } = blobOfParts(3, 2000)
    const wrong = sha256(randomBytes(8))
    const { uploadId } = await start(wrong)
    const listed = []
    for (let i = 0; i < 3; i++)
      listed.push(await send(uploadId, i + 1, parts[i]))
    await expectBlobError(
      t.uploads.complete(ALICE, uploadId, wrong, listed),
      'InvalidDigest',
    )
    expect(await t.store.size(wrong)).toBeNull()
    expect(await t.store.size(hex)).toBeNull()
    expect(await t.leftovers()).toEqual([])
    await expectBlobError(
      t.uploads.putPart(ALICE, uploadId, 1, bodyOf(parts[0]), 2000),
      'InvalidUploadId',
    )
  })

  it('answers InvalidDigest for parts read back out of order (no hash kept on the way)', async () => {
    const { hex, parts } = blobOfParts(3, 2000)
    const { uploadId } = await start(hex)
    const listed = [
      await send(uploadId, 3, parts[2]),
      await send(uploadId, 2, parts[1]),
      await send(uploadId, 1, randomBytes(2000)),
    ]
    await expectBlobError(
      t.uploads.complete(ALICE, uploadId, hex, listed.reverse()),
      'InvalidDigest',
    )
    expect(await t.store.size(hex)).toBeNull()
    expect(await t.leftovers()).toEqual([])
  })

  it('keeps a blob already stored when an upload of the same digest completes', async () => {
    const { blob, hex, parts } = blobOfParts(2, 3000)
    await t.store.put(hex, bodyOf(blob), 1 << 20, blob.length)
    const { uploadId } = await start(hex)
    const listed = [
      await send(uploadId, 1, parts[0]),
      await send(uploadId, 2, parts[1]),
    ]
    expect(
      await t.uploads.complete(ALICE, uploadId, hex, listed),
    ).toMatchObject({ size: blob.length })
    expect(await stored(t.store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('refuses an upload that assembles more than the largest blob', async () => {
    const small = await openStore(kind, { maxBlobBytes: 5000 })
    try {
      const { hex, parts } = blobOfParts(2, 4000)
      const { uploadId } = await small.uploads.initiate({ caller: ALICE, hex })
      await expectBlobError(
        small.uploads.putPart(
          ALICE,
          uploadId,
          1,
          bodyOf(randomBytes(5001)),
          5001,
        ),
        'PayloadTooLarge',
      )
      await expectBlobError(
        small.uploads.putPart(ALICE, uploadId, 1, bodyOf(randomBytes(5001))),
        'PayloadTooLarge',
      )
      const listed = []
      for (let i = 0; i < 2; i++) {
        const { etag } = await small.uploads.putPart(
          ALICE,
          uploadId,
          i + 1,
          bodyOf(parts[i]),
          parts[i].length,
        )
        listed.push({ partNumber: i + 1, etag })
      }
      await expectBlobError(
        small.uploads.complete(ALICE, uploadId, hex, listed),
        'PayloadTooLarge',
      )
      expect(await small.store.size(hex)).toBeNull()
    } finally {
      await small.close()
    }
  })

  it('leaves nothing behind an aborted upload', async () => {
    const { hex, parts } = blobOfParts(3, 2000)
    const { uploadId } = await start(hex)
    await send(uploadId, 2, parts[1])
    await send(uploadId, 1, parts[0])
    expect(await t.leftovers()).not.toEqual([])
    await t.uploads.abort(ALICE, uploadId)
    expect(await t.leftovers()).toEqual([])
    expect(await t.store.size(hex)).toBeNull()
    await expectBlobError(t.uploads.abort(ALICE, uploadId), 'InvalidUploadId')
  })

  it('parses upload digests, refusing anything but sha256:<64 hex>', async () => {
    const hex = sha256(randomBytes(4))
    expect(parseUploadDigest(`sha256:${hex}`)).toBe(hex)
    for (const bad of [
      hex,
      `sha256:${hex.toUpperCase()}`,
      `sha512:${hex}`,
      5,
    ]) {
      await expectBlobError(() => parseUploadDigest(bad), 'InvalidDigest')
    }
  })
})
