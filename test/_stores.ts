import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { expect } from 'vitest'
import { DiskBlobStore } from '../src/blobs/disk-store.ts'
import { BlobStoreError, type BlobErrorCode } from '../src/blobs/errors.ts'
import { S3BlobStore } from '../src/blobs/s3-store.ts'
import type { BlobStore } from '../src/blobs/store.ts'
import { LocalUploadSessions } from '../src/blobs/upload-sessions.ts'
import { Uploads } from '../src/blobs/uploads.ts'
import { Database } from '../src/db.ts'
import { startS3, type TestS3 } from './_s3.ts'

export type StoreKind = 'disk' | 's3'
export const STORE_KINDS: StoreKind[] = ['disk', 's3']

/** One store with its upload service, on a temp data dir (and, for s3, its own s3rver). */
export type TestStore = {
  kind: StoreKind
  store: BlobStore
  uploads: Uploads
  db: Database
  dir: string
  s3: TestS3 | undefined
  /** What unfinished uploads keep in the store: files, or S3 uploads and temp objects. */
  leftovers(): Promise<string[]>
  /** The same data opened again by a new store and service, as after a restart. */
  restart(): Promise<TestStore>
  close(): Promise<void>
}

export type StoreOptions = {
  ttlMs?: number
  maxBlobBytes?: number
  copyLimit?: number
  copyPartBytes?: number
}

export const openStore = async (
  kind: StoreKind,
  opts: StoreOptions = {},
  shared?: { dir: string; s3: TestS3 | undefined },
): Promise<TestStore> => {
  const dir = shared?.dir ?? (await mkdtemp(join(tmpdir(), 'atcr-store-')))
  const s3 = kind === 's3' ? (shared?.s3 ?? (await startS3())) : undefined
  const db = new Database(join(dir, 'hold.sqlite'))
  const store: BlobStore = s3
    ? new S3BlobStore({
        target: s3.target,
        prefix: 'hold/',
        spoolDir: join(dir, 's3-spool'),
        client: { retryDelaysMs: [] },
        copyLimit: opts.copyLimit,
        copyPartBytes: opts.copyPartBytes,
      })
    : new DiskBlobStore(dir, db)
  await store.init()
  const uploads = new Uploads(store, new LocalUploadSessions(db), {
    ttlMs: opts.ttlMs ?? 24 * 3600 * 1000,
    maxBlobBytes: opts.maxBlobBytes ?? 64 * 1024 * 1024,
  })
  const leftovers = async (): Promise<string[]> => {
    if (store instanceof S3BlobStore) {
      const uploads = await store.client.listMultipartUploads('hold/uploads/')
      const objects = await store.client.listObjects('hold/uploads/')
      return [
        ...uploads.map((u) => `upload ${u.key}`),
        ...objects.map((o) => `object ${o.key}`),
      ]
    }
    const under = join(dir, 'blobs', 'uploads')
    return (await readdir(under, { recursive: true })).map((f) =>
      join(under, f),
    )
  }
  const closeOwn = async () => {
    await store.close()
    await db.close()
  }
  return {
    kind,
    store,
    uploads,
    db,
    dir,
    s3,
    leftovers,
    restart: async () => {
      await closeOwn()
      return openStore(kind, opts, { dir, s3 })
    },
    close: async () => {
      await closeOwn()
      await s3?.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export const sha256 = (bytes: Uint8Array): string =>
  createHash('sha256').update(bytes).digest('hex')

/** A body that arrives in pieces, as a request's does. */
export const bodyOf = (bytes: Buffer, pieces = 3): Readable => {
  const size = Math.ceil(bytes.length / pieces) || 1
  const chunks = []
  for (let at = 0; at < bytes.length; at += size) {
    chunks.push(bytes.subarray(at, at + size))
  }
  return Readable.from(chunks)
}

export const readAll = async (body: Readable): Promise<Buffer> => {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** The bytes stored under hex, or null. */
export const stored = async (
  store: BlobStore,
  hex: string,
): Promise<Buffer | null> =>
  (await store.size(hex)) === null ? null : readAll(await store.read(hex))

/** Awaits p and expects it to fail with a BlobStoreError of `code`. */
export const expectBlobError = async (
  p: Promise<unknown> | (() => unknown),
  code: BlobErrorCode,
): Promise<BlobStoreError> => {
  let caught: unknown
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(BlobStoreError)
  expect((caught as BlobStoreError).code).toBe(code)
  return caught as BlobStoreError
}
