import { MemoryBlockstore, MST, readCarWithRoot } from '@atproto/repo'
import { decode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { NodeCache } from '../src/repo/node-cache.ts'
import { checkTree } from '../src/repo/repair.ts'
import { recordsIn, repoCar, verifiedRepo } from './_repo.ts'
import { startHold, type TestHold } from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const STATS = ids.HoldStats

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

  it('when full, keeps the top layers that fit in half of it, and lets the least recently used of the rest go', () => {
    const entry = 100 + NodeCache.OVERHEAD
    const cache = new NodeCache(4 * entry)
    cache.set('root', block(100), 2)
    cache.set('mid', block(100), 1)
    cache.set('leafA', block(100), 0)
    cache.set('leafB', block(100), 0)
    // Layers 1 and 2 fit in half: a leaf makes room among the leaves, the oldest first.
    expect(cache.get('leafA', 0)).toBeDefined()
    cache.set('leafC', block(100), 0)
    expect(cache.has('leafB')).toBe(false)
    expect(cache.evictions).toBe(1)
    // Three nodes of layers 1-2 no longer fit in half: layer 1 is with the leaves, and its
    // node read least recently goes before leaves read since.
    cache.set('mid2', block(100), 1)
    expect(cache.has('mid')).toBe(false)
    expect(['root', 'leafA', 'leafC', 'mid2'].every((k) => cache.has(k))).toBe(
      true,
    )
    expect(cache.perLayer).toEqual([2, 1, 1])
    // With the top alone held apart, a new leaf is not the one that goes.
    cache.set('leafD', block(100), 0)
    expect(cache.has('leafA')).toBe(false)
    expect(cache.has('leafD')).toBe(true)
    expect(cache.usedBytes).toBe(4 * entry)
    // A node kept before its layer was known moves to the layer a later read names.
    cache.set('unlayered', block(100))
    expect(cache.layerOf('unlayered')).toBe(0)
    expect(cache.get('unlayered', 3)).toBeDefined()
    expect(cache.layerOf('unlayered')).toBe(3)
    expect(cache.get('root')).toBeDefined()
    expect(cache.layerOf('root')).toBe(2)
    expect(cache.size).toBe(4)
  })

  it('holds apart only what fits in half: past it, a layer-2 node read long ago goes before a new leaf', () => {
    const entry = 100 + NodeCache.OVERHEAD
    const cache = new NodeCache(2 * entry)
    cache.set('root', block(100), 3)
    cache.set('mid', block(100), 2)
    cache.set('leaf', block(100), 0)
    expect(cache.has('leaf')).toBe(true)
    expect(cache.has('mid')).toBe(false)
    expect(cache.has('root')).toBe(true)
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

/** Every MST node of the repo in a CAR with its layer and size, by the library's walk. */
const treeLayers = async (
  car: Uint8Array,
): Promise<Map<string, { layer: number; bytes: number }>> => {
  const { root, blocks } = await readCarWithRoot(car)
  const commit = decode(blocks.get(root)!) as unknown as { data: Cid }
  const storage = new MemoryBlockstore(blocks)
  const nodes = new Map<string, { layer: number; bytes: number }>()
  for await (const entry of MST.load(storage, commit.data).walk()) {
    if (entry.isTree()) {
      const cid = await entry.getPointer()
      nodes.set(cid.toString(), {
        layer: await entry.getLayer(),
        bytes: blocks.get(cid)!.byteLength,
      })
    }
  }
  return nodes
}

/**
 * A cache too small for the tree holds its top layers apart, as many whole layers as weigh
 * at most half of it: every node of those is held, under its own layer. Returns how many
 * layers are held apart.
 */
const expectTopLayersHeld = (
  cache: NodeCache,
  tree: Map<string, { layer: number; bytes: number }>,
): number => {
  const weight: number[] = []
  for (const { layer, bytes } of tree.values()) {
    weight[layer] = (weight[layer] ?? 0) + bytes + NodeCache.OVERHEAD
  }
  let top = weight.length
  let held = 0
  while (top > 0 && held + (weight[top - 1] ?? 0) <= cache.maxBytes / 2) {
    top--
    held += weight[top] ?? 0
  }
  // Some layers fit in half the cache, and not all of them.
  expect(top).toBeGreaterThan(0)
  expect(top).toBeLessThan(weight.length)
  for (const [cid, { layer }] of tree) {
    if (layer >= top) expect(cache.layerOf(cid)).toBe(layer)
    else if (cache.has(cid)) expect(cache.layerOf(cid)).toBe(layer)
  }
  return weight.length - top
}

/** The CIDs of every MST node of the repo in a CAR, by the library's walk. */
const treeNodes = async (car: Uint8Array): Promise<Set<string>> =>
  new Set((await treeLayers(car)).keys())

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
  const exportRepo = (h: TestHold) => repoCar(h.url, h.did)

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

  it('holds the top layers of a tree larger than the cache, after a walk, a check at start and commits', () =>
    withHold({ HOLD_REPO_CACHE_MB: '1' }, async (h) => {
      const { writer, db } = h.hold.ctx
      for (let i = 0; i < 40; i++) {
        await writer.putRecords(statsPuts(i * 200, 200, 1))
      }
      await writer.warm()
      const before = await treeLayers(await exportRepo(h))
      writer.nodes.clear()
      await writer.warm()
      expect(writer.nodes.size).toBeLessThan(before.size)
      expectTopLayersHeld(writer.nodes, before)
      // Commits of keys spread over the tree: their new nodes enter under their layers, and
      // the nodes they replaced leave.
      await writer.putRecords(statsPuts(0, 200, 2))
      await writer.putRecords(statsPuts(3000, 200, 2))
      const after = await treeLayers(await exportRepo(h))
      expectTopLayersHeld(writer.nodes, after)
      for (const cid of before.keys()) {
        if (!after.has(cid)) expect(writer.nodes.has(cid)).toBe(false)
      }
      // The check a start after a crash makes reads the tree a layer at a time.
      const checked = new NodeCache(2 ** 20)
      const { cid } = h.hold.ctx.storage.getRootSync()!
      const commit = decode(
        h.hold.ctx.storage.getBlockSync(cid.toString())!,
      ) as unknown as { data: Cid }
      const check = await checkTree(db, commit.data.bytes, checked)
      expect(check.missingCount).toBe(0)
      expect(check.nodes).toBe(after.size)
      expectTopLayersHeld(checked, after)
    }))

  it('commits the same repo with the cache off (HOLD_REPO_CACHE_MB=0)', () =>
    withHold({ HOLD_REPO_CACHE_MB: '0' }, async (h) => {
      const { writer } = h.hold.ctx
      await writer.putRecords(statsPuts(0, 200, 1))
      await writer.putRecords(statsPuts(100, 200, 3))
      expect(writer.nodes.size).toBe(0)
      expect(await writer.warm()).toBe(0)
      const repo = await verifiedRepo(h.url, h.did)
      expect(recordsIn(repo, STATS).length).toBe(300)
    }))
})
