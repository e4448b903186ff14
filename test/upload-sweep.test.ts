import { randomBytes } from 'node:crypto'
import { appendFile, mkdir, readdir, rm, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { S3BlobStore } from '../src/blobs/s3-store.ts'
import type { ListedPart } from '../src/blobs/store.ts'
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
const HOUR = 3600 * 1000

describe.each(STORE_KINDS)('unfinished uploads on %s', (kind) => {
  let t: TestStore
  afterEach(() => t.close())

  const send = async (
    s: TestStore,
    uploadId: string,
    n: number,
    bytes: Buffer,
  ): Promise<ListedPart> => {
    const body = bodyOf(bytes)
    const { etag } = await s.uploads.putPart(
      ALICE,
      uploadId,
      n,
      body,
      bytes.length,
    )
    return { partNumber: n, etag }
  }

  it('are aborted by the sweep once older than the TTL, leaving nothing', async () => {
    t = await openStore(kind, { ttlMs: HOUR })
    const now = Date.now()
    const hex = sha256(randomBytes(8))
    const old = await t.uploads.initiate({ caller: ALICE, hex }, now - HOUR - 1)
    await send(t, old.uploadId, 2, randomBytes(3000))
    await send(t, old.uploadId, 1, randomBytes(3000))
    const fresh = await t.uploads.initiate(
      { caller: ALICE, hex },
      now - HOUR + 60_000,
    )
    expect(await t.uploads.count()).toBe(2)

    expect(await t.uploads.sweep(now)).toEqual({ expired: 1, orphans: 0 })
    expect(await t.uploads.count()).toBe(1)
    await expectBlobError(
      send(t, old.uploadId, 3, randomBytes(10)),
      'InvalidUploadId',
    )
    // The fresh upload is untouched and still completes.
    const bytes = randomBytes(2000)
    const part = await send(t, fresh.uploadId, 1, bytes)
    await t.uploads.complete(ALICE, fresh.uploadId, sha256(bytes), [part])
    expect(await t.leftovers()).toEqual([])
    expect(await t.uploads.count()).toBe(0)
  })

  it('survive a restart: parts sent before it and after it assemble', async () => {
    t = await openStore(kind)
    const parts = [
      randomBytes(3000),
      randomBytes(3000),
      randomBytes(1000),
      randomBytes(500),
    ]
    const blob = Buffer.concat(parts)
    const hex = sha256(blob)
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    const listed = [
      await send(t, uploadId, 1, parts[0]),
      await send(t, uploadId, 2, parts[1]),
      undefined,
      await send(t, uploadId, 4, parts[3]),
    ]
    t = await t.restart()
    expect(await t.uploads.count()).toBe(1)
    listed[2] = await send(t, uploadId, 3, parts[2])
    await t.uploads.complete(ALICE, uploadId, hex, listed)
    expect(await stored(t.store, hex)).toEqual(blob)
    expect(await t.leftovers()).toEqual([])
  })

  it('leave nothing when the store kept what no row knows (orphans)', async () => {
    t = await openStore(kind, { ttlMs: HOUR })
    const now = Date.now()
    const kept = randomBytes(100)
    await t.store.put(sha256(kept), bodyOf(kept), 1000, kept.length)
    if (t.store instanceof S3BlobStore) {
      const { client } = t.store
      await client.createMultipartUpload('hold/uploads/orphan1/data')
      await client.putObject('hold/uploads/orphan2/data', Buffer.from('x'))
      // Outside the hold's uploads: never touched.
      await client.putObject('other/uploads/x/data', Buffer.from('x'))
      await client.putObject('hold/uploads/not-an-upload', Buffer.from('x'))
    } else {
      for (const id of ['orphan1', 'orphan2']) {
        const dir = join(t.dir, 'blobs', 'uploads', id)
        await mkdir(dir)
        await utimes(dir, new Date(now - 2 * HOUR), new Date(now - 2 * HOUR))
      }
    }
    // The sweep runs with a clock two hours on (s3rver's clock cannot be set back).
    const later = now + 2 * HOUR
    const live = await t.uploads.initiate(
      { caller: ALICE, hex: sha256(kept) },
      later,
    )
    // Not yet older than the TTL: kept.
    expect((await t.uploads.sweep(now - HOUR - 60_000)).orphans).toBe(0)
    expect(await t.uploads.sweep(later)).toEqual({
      expired: 0,
      orphans: 2,
    })
    if (t.store instanceof S3BlobStore) {
      const keys = (await t.store.client.listObjects('')).map((o) => o.key)
      expect(keys).toContain('other/uploads/x/data')
      expect(keys).toContain('hold/uploads/not-an-upload')
      expect(await t.store.client.listMultipartUploads('')).toHaveLength(1)
    } else {
      expect(await readdir(join(t.dir, 'blobs', 'uploads'))).toEqual([
        live.uploadId,
      ])
    }
    expect(await stored(t.store, sha256(kept))).toEqual(kept)
  })
})

describe('a disk upload after a crash', () => {
  let t: TestStore
  afterEach(() => t.close())

  it('drops bytes written past what its rows record', async () => {
    t = await openStore('disk')
    const parts = [randomBytes(3000), randomBytes(2000)]
    const blob = Buffer.concat(parts)
    const hex = sha256(blob)
    const { uploadId } = await t.uploads.initiate({ caller: ALICE, hex })
    const p1 = await t.uploads.putPart(
      ALICE,
      uploadId,
      1,
      bodyOf(parts[0]),
      3000,
    )
    // A part that was being written when the hold stopped, never recorded.
    const assembly = join(t.dir, 'blobs', 'uploads', uploadId, 'assembly')
    await appendFile(assembly, randomBytes(777))
    t = await t.restart()
    const p2 = await t.uploads.putPart(
      ALICE,
      uploadId,
      2,
      bodyOf(parts[1]),
      2000,
    )
    await t.uploads.complete(ALICE, uploadId, hex, [
      { partNumber: 1, etag: p1.etag },
      { partNumber: 2, etag: p2.etag },
    ])
    expect(await stored(t.store, hex)).toEqual(blob)
  })

  it('asks for a part again when its file did not survive', async () => {
    t = await openStore('disk')
    const { uploadId } = await t.uploads.initiate({
      caller: ALICE,
      hex: sha256(randomBytes(8)),
    })
    const p2 = await t.uploads.putPart(
      ALICE,
      uploadId,
      2,
      bodyOf(randomBytes(100)),
      100,
    )
    const dir = join(t.dir, 'blobs', 'uploads', uploadId)
    await rm(join(dir, `part-2-${p2.etag}`))
    t = await t.restart()
    const p1 = await t.uploads.putPart(
      ALICE,
      uploadId,
      1,
      bodyOf(randomBytes(100)),
      100,
    )
    await expectBlobError(
      t.uploads.complete(ALICE, uploadId, sha256(randomBytes(8)), [
        { partNumber: 1, etag: p1.etag },
        { partNumber: 2, etag: p2.etag },
      ]),
      'MissingParts',
    )
  })
})
