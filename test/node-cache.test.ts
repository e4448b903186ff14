import {
  MemoryBlockstore,
  MST,
  readCarWithRoot,
  verifyRepoCar,
} from '@atproto/repo'
import { decode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { describe, expect, it } from 'vitest'
import { NodeCache } from '../src/repo/node-cache.ts'
import { getBytes, startHold, type TestHold } from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const STATS = 'io.atcr.hold.stats'

describe('NodeCache', () => {
  const block = (n: number) => new Uint8Array(n)

  it('evicts the least recently used blocks past its byte bound', () => {
    // 3 entries of 100 bytes fit (each also costs a fixed overhead), a 4th does not.
    const entry = 100 + NodeCache.OVERHEAD
    const cache = new NodeCache(3 * entry)
    cache.set('a', block(100))
    cache.set('b', block(100))
    cache.set('c', block(100))
    expect(cache.get('a')).toBeDefined() // a is now the most recent
    cache.set('d', block(100))
    expect(cache.has('b')).toBe(false)
    expect(['a', 'c', 'd'].every((k) => cache.has(k))).toBe(true)
    expect(cache.usedBytes).toBe(3 * entry)
    cache.delete('a')
    expect(cache.size).toBe(2)
    expect(cache.usedBytes).toBe(2 * entry)
    expect(cache.get('zz')).toBeUndefined()
  })

  it('holds nothing with a zero bound, and never a block larger than its bound', () => {
    expect(
      (() => {
        const cache = new NodeCache(0)
        cache.set('a', block(10))
        return cache.size
      })(),
    ).toBe(0)
    const cache = new NodeCache(2 * (100 + NodeCache.OVERHEAD))
    cache.set('a', block(100))
    cache.set('huge', block(1000))
    expect(cache.has('huge')).toBe(false)
    expect(cache.has('a')).toBe(true)
    expect(cache.evictions).toBe(0)
    cache.set('b', block(100))
    cache.set('c', block(100))
    expect(cache.evictions).toBe(1)
  })

  it('keeps its own copy of a block that is a view into a larger buffer', () => {
    const big = new Uint8Array(1 << 20)
    big[5000] = 7
    const cache = new NodeCache(1 << 20)
    cache.set('v', big.subarray(5000, 5250))
    const kept = cache.get('v')!
    expect(kept[0]).toBe(7)
    expect(kept.buffer).not.toBe(big.buffer)
    expect(kept.buffer.byteLength).toBeLessThan(big.byteLength)
  })
})

/** The CIDs of every MST node of the repo in a CAR, by the library's walk. */
const treeNodes = async (car: Uint8Array): Promise<Set<string>> => {
  const { root, blocks } = await readCarWithRoot(car)
  const commit = decode(blocks.get(root)!) as unknown as { data: Cid }
  const storage = new MemoryBlockstore(blocks)
  const nodes = new Set<string>()
  for await (const entry of MST.load(storage, commit.data).walk()) {
    if (entry.isTree()) nodes.add((await entry.getPointer()).toString())
  }
  return nodes
}

const statsPuts = (from: number, count: number, pulls: number) =>
  Array.from({ length: count }, (_, i) => ({
    collection: STATS,
    rkey: Buffer.from(`did:plc:cache${from + i}:app`).toString('base64url'),
    record: {
      $type: STATS,
      did: `did:plc:cache${from + i}`,
      ownerDid: `did:plc:cache${from + i}`,
      repository: 'app',
      pullCount: pulls,
      pushCount: 0,
      createdAt: '2026-11-27T00:00:00.000Z',
      updatedAt: '2026-11-27T00:00:00.000Z',
    },
  }))

/** A hold of OWNER's with extra env, stopped after fn whatever happens. */
const withHold = async (
  env: Record<string, string>,
  fn: (h: TestHold) => Promise<void>,
) => {
  const h = await startHold({ env: { HOLD_OWNER_DID: OWNER, ...env } })
  try {
    await fn(h)
  } finally {
    await h.stop()
  }
}

describe('the writer with its node cache', () => {
  const exportRepo = async (h: TestHold) => {
    const car = await getBytes(h.url, 'com.atproto.sync.getRepo', {
      did: h.did,
    })
    expect(car.status).toBe(200)
    return car.bytes
  }

  it('after a walk holds exactly the nodes of the current tree, and commits keep it so', () =>
    withHold({}, async (h) => {
      const { writer } = h.hold.ctx
      for (let i = 0; i < 5; i++)
        await writer.putRecords(statsPuts(i * 150, 150, 1))
      await writer.warm() // the walk the start began
      writer.nodes.clear()
      const read = await writer.warm({ sliceNodes: 7 })
      const nodes = await treeNodes(await exportRepo(h))
      expect(read).toBe(nodes.size)
      expect(writer.nodes.size).toBe(nodes.size)
      // Updates and deletes: replaced nodes leave the cache, new ones enter it.
      await writer.putRecords(statsPuts(0, 200, 2))
      await writer.deleteRecords(
        statsPuts(300, 100, 1).map(({ collection, rkey }) => ({
          collection,
          rkey,
        })),
      )
      const after = await treeNodes(await exportRepo(h))
      expect(writer.nodes.size).toBe(after.size)
      for (const cid of after) expect(writer.nodes.has(cid)).toBe(true)
    }))

  it('walks again from the new head when a commit replaced nodes it had not reached', () =>
    withHold({}, async (h) => {
      const { writer } = h.hold.ctx
      for (let i = 0; i < 6; i++) {
        await writer.putRecords(statsPuts(i * 150, 150, 1))
      }
      await writer.warm()
      writer.nodes.clear()
      // One node a slice: the commit lands while the walk is under way.
      const walk = writer.warm({ sliceNodes: 1 })
      await writer.putRecords(statsPuts(0, 200, 5))
      await walk
      const nodes = await treeNodes(await exportRepo(h))
      for (const cid of nodes) expect(writer.nodes.has(cid)).toBe(true)
    }))

  it('stops reading the tree when the cache is full', () =>
    withHold({ HOLD_REPO_CACHE_MB: '1' }, async (h) => {
      const { writer } = h.hold.ctx
      for (let i = 0; i < 40; i++) {
        await writer.putRecords(statsPuts(i * 200, 200, 1))
      }
      await writer.warm()
      writer.nodes.clear()
      const evictions = writer.nodes.evictions
      const read = await writer.warm()
      const nodes = await treeNodes(await exportRepo(h))
      expect(read).toBeLessThan(nodes.size)
      expect(writer.nodes.evictions - evictions).toBeLessThanOrEqual(1)
      expect(writer.nodes.usedBytes).toBeGreaterThan(0.9 * 2 ** 20)
      expect(writer.nodes.usedBytes).toBeLessThanOrEqual(2 ** 20)
    }))

  it('commits the same repo with the cache off (HOLD_REPO_CACHE_MB=0)', () =>
    withHold({ HOLD_REPO_CACHE_MB: '0' }, async (h) => {
      const { writer } = h.hold.ctx
      await writer.putRecords(statsPuts(0, 200, 1))
      await writer.putRecords(statsPuts(100, 200, 3))
      expect(writer.nodes.size).toBe(0)
      expect(await writer.warm()).toBe(0)
      const car = await exportRepo(h)
      const doc = (await (
        await fetch(`${h.url}/.well-known/did.json`)
      ).json()) as { verificationMethod: { publicKeyMultibase: string }[] }
      const key = `did:key:${doc.verificationMethod[0].publicKeyMultibase}`
      const repo = await verifyRepoCar(car, h.did, key)
      expect(repo.creates.filter((c) => c.collection === STATS).length).toBe(
        300,
      )
    }))
})
