import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { S3BlobStore } from '../src/blobs/s3-store.ts'
import { InOrderHash } from '../src/blobs/s3/in-order-hash.ts'
import type { ListedPart } from '../src/blobs/store.ts'
import { UploadTable } from '../src/blobs/upload-table.ts'
import { startS3 } from './_s3.ts'
import {
  bodyOf,
  expectBlobError,
  openStore,
  sha256,
  stored,
  type StoreOptions,
  type TestStore,
} from './_stores.ts'

const ALICE = 'did:plc:alice000000000000000000'
const HOUR = 3600 * 1000

describe('the S3 store', () => {
  let t: TestStore
  afterEach(() => t.close())

  const open = async (opts: StoreOptions = {}, minPartSize = 0) => {
    const s3 = await startS3({ minPartSize })
    const dir = await mkdtemp(join(tmpdir(), 'atcr-store-'))
    t = await openStore('s3', opts, { dir, s3 })
    return t.store as S3BlobStore
  }

  /** Sends parts 1..n through the hold, in order. */
  const sendAll = async (uploadId: string, parts: Buffer[]) => {
    const listed: ListedPart[] = []
    for (const [i, bytes] of parts.entries()) {
      const { etag } = await t.uploads.putPart(
        ALICE,
        uploadId,
        i + 1,
        bodyOf(bytes),
        bytes.length,
      )
      listed.push({ partNumber: i + 1, etag })
    }
    return listed
  }

  /** Counts the objects read back from S3 while fn runs. */
  const readBacks = async (store: S3BlobStore, fn: () => Promise<unknown>) => {
    const getObject = store.client.getObject
    let reads = 0
    store.client.getObject = (...args) => {
      reads++
      return getObject.apply(store.client, args)
    }
    try {
      await fn()
    } finally {
      store.client.getObject = getObject
    }
    return reads
  }

  it('reads nothing back when every part came through the hold in order', async () => {
    const store = await open()
    const parts = [randomBytes(4000), randomBytes(4000), randomBytes(100)]
    const blob = Buffer.concat(parts)
    const hex = sha256(blob)
    const a = await t.uploads.initiate({ caller: ALICE, hex })
    const listed = await sendAll(a.uploadId, parts)
    expect(
      await readBacks(store, () =>
        t.uploads.complete(ALICE, a.uploadId, hex, listed),
      ),
    ).toBe(0)
    expect(await stored(store, hex)).toEqual(blob)
    // The same parts with a wrong digest: refused from the hash kept on the way.
    const wrong = sha256(randomBytes(8))
    const b = await t.uploads.initiate({ caller: ALICE, hex: wrong })
    const again = await sendAll(b.uploadId, parts)
    let refused: unknown
    expect(
      await readBacks(store, () =>
        t.uploads
          .complete(ALICE, b.uploadId, wrong, again)
          .catch((err: unknown) => (refused = err)),
      ),
    ).toBe(0)
    await expectBlobError(Promise.reject(refused), 'InvalidDigest')
    expect(await store.size(wrong)).toBeNull()
    expect(await t.leftovers()).toEqual([])
  })

  it('reads the assembly back when a part URL was handed out', async () => {
    const store = await open()
    const parts = [randomBytes(4000), randomBytes(100)]
    const hex = sha256(Buffer.concat(parts))
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    await t.uploads.partUrl(ALICE, uploadId, 2)
    const listed = await sendAll(uploadId, parts)
    expect(
      await readBacks(store, () =>
        t.uploads.complete(ALICE, uploadId, hex, listed),
      ),
    ).toBe(1)
  })

  it('copies a blob past the copy limit in equal ranges', async () => {
    const store = await open({ copyLimit: 10_000, copyPartBytes: 6_000 })
    const parts = [randomBytes(9000), randomBytes(9000), randomBytes(7000)]
    const blob = Buffer.concat(parts)
    const hex = sha256(blob)
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    const listed = await sendAll(uploadId, parts)
    await t.uploads.complete(ALICE, uploadId, hex, listed)
    expect(await stored(store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('answers CompletionFailed naming the 5 MiB rule when S3 finds parts too small', async () => {
    await open({}, 5 * 1024 * 1024)
    const parts = [randomBytes(1000), randomBytes(1000)]
    const hex = sha256(Buffer.concat(parts))
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    const listed = await sendAll(uploadId, parts)
    const err = await expectBlobError(
      t.uploads.complete(ALICE, uploadId, hex, listed),
      'CompletionFailed',
    )
    expect(err.message).toContain('5 MiB')
    // The upload is still open: it can be aborted (or completed with fewer parts).
    expect(await t.uploads.count()).toBe(1)
    await t.uploads.abort(ALICE, uploadId)
    expect(await t.leftovers()).toEqual([])
  })

  it('resumes a completion whose first answer was lost', async () => {
    const store = await open()
    const parts = [randomBytes(3000), randomBytes(50)]
    const blob = Buffer.concat(parts)
    const hex = sha256(blob)
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    const listed = await sendAll(uploadId, parts)
    const row = new UploadTable(t.db).get(uploadId)!
    // S3 assembled the parts, and the hold never heard back.
    await store.client.completeMultipartUpload(
      `hold/uploads/${uploadId}/data`,
      row.storeId!,
      listed,
    )
    await t.uploads.complete(ALICE, uploadId, hex, listed)
    expect(await stored(store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('resumes from an assembled upload after a restart, and sweeps one left so', async () => {
    const store = await open({ ttlMs: HOUR })
    const parts = [randomBytes(3000)]
    const hex = sha256(parts[0])
    const now = Date.now()
    const uploads = []
    for (const createdAt of [now, now - 2 * HOUR]) {
      const { uploadId } = await t.uploads.initiate(
        { caller: ALICE, hex },
        createdAt,
      )
      const listed = await sendAll(uploadId, parts)
      const table = new UploadTable(t.db)
      await store.client.completeMultipartUpload(
        `hold/uploads/${uploadId}/data`,
        table.get(uploadId)!.storeId!,
        listed,
      )
      table.markAssembled(uploadId)
      uploads.push({ uploadId, listed })
    }
    t = await t.restart()
    expect(await t.uploads.sweep(now)).toEqual({ expired: 1, orphans: 0 })
    expect(await t.leftovers()).toEqual([
      `object hold/uploads/${uploads[0].uploadId}/data`,
    ])
    await t.uploads.complete(ALICE, uploads[0].uploadId, hex, uploads[0].listed)
    expect(await stored(t.store, hex)).toEqual(parts[0])
    expect(await t.leftovers()).toEqual([])
  })

  it('spools a part of unknown length and leaves no spool file, whatever happens', async () => {
    const store = await open({ maxBlobBytes: 10_000 })
    const spool = join(t.dir, 's3-spool')
    const bytes = randomBytes(8000)
    const { uploadId } = await t.uploads.initiate({
      caller: ALICE,
      hex: sha256(bytes),
    })
    const { etag } = await t.uploads.putPart(ALICE, uploadId, 1, bodyOf(bytes))
    await expectBlobError(
      t.uploads.putPart(ALICE, uploadId, 2, bodyOf(randomBytes(10_001))),
      'PayloadTooLarge',
    )
    expect(await readdir(spool)).toEqual([])
    await t.uploads.complete(ALICE, uploadId, sha256(bytes), [
      { partNumber: 1, etag },
    ])
    expect(await stored(store, sha256(bytes))).toEqual(bytes)
  })

  it('answers StorageUnavailable while S3 cannot be reached', async () => {
    const store = await open()
    const blob = randomBytes(100)
    const hex = sha256(blob)
    await store.put(hex, bodyOf(blob), 1000, blob.length)
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    await t.s3!.close()
    await expectBlobError(
      store.size(sha256(randomBytes(8))),
      'StorageUnavailable',
    )
    await expectBlobError(store.read(hex), 'StorageUnavailable')
    await expectBlobError(
      t.uploads.initiate({ caller: ALICE, hex }),
      'StorageUnavailable',
    )
    await expectBlobError(
      t.uploads.putPart(ALICE, uploadId, 1, bodyOf(blob), blob.length),
      'StorageUnavailable',
    )
    // What needs no request still works: a size known, a URL signed.
    expect(await store.size(hex)).toBe(100)
    expect(store.directUrl(hex, 'GET').url).toContain(hex)
  })
})

describe('the in-order hash', () => {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex')
  const feed = (h: InOrderHash, n: number, s: string, etag = s) => {
    const x = h.begin(n)
    if (x) h.commit(n, x.update(s), etag)
    return x !== undefined
  }
  const parts = (...etags: string[]) =>
    etags.map((etag, i) => ({ partNumber: i + 1, etag }))

  it('follows parts 1, 2, 3 and a retry of the latest', () => {
    const h = new InOrderHash()
    expect(feed(h, 1, 'a')).toBe(true)
    expect(feed(h, 2, 'X')).toBe(true)
    expect(feed(h, 2, 'b')).toBe(true)
    expect(h.digestFor(parts('a', 'b'))).toBe(sha('ab'))
    expect(h.digestFor(parts('"a"', '"b"'))).toBe(sha('ab'))
    expect(h.digestFor(parts('a', 'X'))).toBeUndefined()
    expect(h.digestFor(parts('a'))).toBeUndefined()
  })

  it('gives up on a gap, an older retry, parts at once, or a part URL', () => {
    const gap = new InOrderHash()
    expect(gap.begin(2)).toBeUndefined()
    expect(feed(gap, 1, 'a')).toBe(false)
    const older = new InOrderHash()
    feed(older, 1, 'a')
    feed(older, 2, 'b')
    expect(feed(older, 1, 'a')).toBe(false)
    expect(older.digestFor(parts('a', 'b'))).toBeUndefined()
    const together = new InOrderHash()
    const first = together.begin(1)!
    expect(together.begin(2)).toBeUndefined()
    together.commit(1, first.update('a'), 'a')
    expect(together.digestFor(parts('a'))).toBeUndefined()
    const bypassed = new InOrderHash()
    feed(bypassed, 1, 'a')
    bypassed.bypassed()
    expect(bypassed.digestFor(parts('a'))).toBeUndefined()
  })

  it('keeps its state when a part fails to store', () => {
    const h = new InOrderHash()
    feed(h, 1, 'a')
    h.begin(2)!.update('lost')
    h.fail()
    expect(feed(h, 2, 'b')).toBe(true)
    expect(h.digestFor(parts('a', 'b'))).toBe(sha('ab'))
  })
})
