import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { setTimeout } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BlobTooLargeError, DigestMismatchError } from '../src/blobs/errors.ts'
import {
  bodyOf,
  openStore,
  readAll,
  sha256,
  STORE_KINDS,
  stored,
  type TestStore,
} from './_stores.ts'

describe.each(STORE_KINDS)('the %s blob store', (kind) => {
  let t: TestStore
  beforeAll(async () => {
    t = await openStore(kind)
  })
  afterAll(() => t.close())

  it.each([
    ['with', true],
    ['without', false],
  ])(
    'stores a blob put %s a declared length under its digest',
    async (_, declared) => {
      const blob = randomBytes(200_000)
      const hex = sha256(blob)
      const size = await t.store.put(
        hex,
        bodyOf(blob, 7),
        1 << 20,
        declared ? blob.length : undefined,
      )
      expect(size).toBe(blob.length)
      expect(await t.store.size(hex)).toBe(blob.length)
      expect(await stored(t.store, hex)).toEqual(blob)
    },
  )

  it('stores an empty blob', async () => {
    const hex = sha256(Buffer.alloc(0))
    expect(await t.store.put(hex, bodyOf(Buffer.alloc(0)), 100, 0)).toBe(0)
    expect(await t.store.size(hex)).toBe(0)
  })

  it.each([
    ['with', true],
    ['without', false],
  ])(
    'stores nothing when the bytes put %s a length do not hash to the digest',
    async (_, declared) => {
      const blob = randomBytes(100_000)
      const wrong = sha256(randomBytes(10))
      await expect(
        t.store.put(
          wrong,
          bodyOf(blob),
          1 << 20,
          declared ? blob.length : undefined,
        ),
      ).rejects.toBeInstanceOf(DigestMismatchError)
      expect(await t.store.size(wrong)).toBeNull()
    },
  )

  it('keeps a stored blob intact when a bad put of the same digest fails', async () => {
    const good = randomBytes(150_000)
    const hex = sha256(good)
    await t.store.put(hex, bodyOf(good), 1 << 20, good.length)
    const bad = Buffer.from(good)
    bad[bad.length - 1] ^= 1
    // The body pauses before it ends: long enough for every byte sent to reach the store.
    const slowBody = () =>
      Readable.from(
        (async function* () {
          yield bad.subarray(0, 100_000)
          yield bad.subarray(100_000)
          await setTimeout(200)
        })(),
      )
    for (const length of [bad.length, undefined]) {
      await expect(
        t.store.put(hex, slowBody(), 1 << 20, length),
      ).rejects.toBeInstanceOf(DigestMismatchError)
    }
    expect(await stored(t.store, hex)).toEqual(good)
  })

  it('stores nothing from a body shorter than its declared length', async () => {
    const blob = randomBytes(50_000)
    const hex = sha256(blob)
    await expect(
      t.store.put(hex, bodyOf(blob.subarray(0, 40_000)), 1 << 20, blob.length),
    ).rejects.toThrow()
    expect(await t.store.size(hex)).toBeNull()
  })

  it('refuses a blob over the limit, declared or not, and stores nothing', async () => {
    const blob = randomBytes(3000)
    const hex = sha256(blob)
    for (const length of [blob.length, undefined]) {
      await expect(
        t.store.put(hex, bodyOf(blob), 2999, length),
      ).rejects.toBeInstanceOf(BlobTooLargeError)
    }
    expect(await t.store.size(hex)).toBeNull()
  })

  it('reads ranges, streamed and whole', async () => {
    const blob = randomBytes(100_000)
    const hex = sha256(blob)
    await t.store.put(hex, bodyOf(blob), 1 << 20, blob.length)
    const range = { start: 1000, end: 70_999 }
    expect(await readAll(await t.store.read(hex, range))).toEqual(
      blob.subarray(1000, 71_000),
    )
    expect(await t.store.readSmall(hex, 99_990, 10)).toEqual(
      blob.subarray(99_990),
    )
    expect(await t.store.readSmall(hex, 0, blob.length)).toEqual(blob)
  })

  it('answers null for the size of a blob it does not have', async () => {
    expect(await t.store.size(sha256(randomBytes(8)))).toBeNull()
  })

  it(
    kind === 's3'
      ? 'hands out presigned GET and HEAD URLs that S3 serves for 15 minutes'
      : 'hands out no direct URL (the hold signs its own)',
    async () => {
      const blob = randomBytes(5000)
      const hex = sha256(blob)
      await t.store.put(hex, bodyOf(blob), 1 << 20, blob.length)
      const now = Date.now()
      const get = t.store.directUrl(hex, 'GET', now)
      if (kind === 'disk') {
        expect(get).toBeNull()
        expect(t.store.directUrl(hex, 'HEAD', now)).toBeNull()
        return
      }
      expect(Date.parse(get!.expiresAt)).toBe(
        Math.floor(now / 1000) * 1000 + 900_000,
      )
      const res = await fetch(get!.url)
      expect(res.status).toBe(200)
      expect(Buffer.from(await res.arrayBuffer())).toEqual(blob)
      const ranged = await fetch(get!.url, {
        headers: { range: 'bytes=10-19' },
      })
      expect(ranged.status).toBe(206)
      expect(Buffer.from(await ranged.arrayBuffer())).toEqual(
        blob.subarray(10, 20),
      )
      const head = await fetch(t.store.directUrl(hex, 'HEAD', now)!.url, {
        method: 'HEAD',
      })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-length')).toBe(String(blob.length))
    },
  )
})
