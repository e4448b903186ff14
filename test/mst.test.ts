import { createHash } from 'node:crypto'
import { cidForCbor, createCid, parseCid, type Cid } from '@atproto/lex-data'
import {
  BlockMap,
  DataDiff,
  MemoryBlockstore,
  MST,
  mstUtil,
} from '@atproto/repo'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { cborCidBytes, cidString } from '../src/repo/cid.ts'
import { decodeFlat, decodeNode, encodeFlat } from '../src/repo/mst-node.ts'
import { encode } from '@atproto/lex-cbor'
import {
  applyMstOps,
  layerOfKey,
  MstOpError,
  type MstOp,
} from '../src/repo/mst.ts'

// Our batched MST against @atproto/repo's, key by key: the same root CID, the same new node
// blocks (byte for byte) and the same removed CIDs as the library's DataDiff, for random trees
// and random batches, and for the shapes that move the root. The proof blocks too: new nodes and
// proof nodes together are the library's newMstBlocks plus every changed key's covering proof
// (what the reference PDS's event carries), and from those blocks alone the library's own MST
// undoes the ops back to the old root, in any order (what a relay does with an event).

const valueCid = (seed: string): Cid =>
  createCid(0x71, 0x12, createHash('sha256').update(seed).digest())

const keyOf = (n: number, collection: string = ids.HoldStats) =>
  `${collection}/${createHash('sha256').update(String(n)).digest('base64url').slice(0, 20)}`

/** Keys whose layer is exactly `layer`, from a deterministic search. */
const keysAtLayer = (layer: number, count: number, from = 0): string[] => {
  const out: string[] = []
  for (let n = from; out.length < count; n++) {
    const key = keyOf(n, ids.HoldLayer)
    if (layerOfKey(key) === layer) out.push(key)
  }
  return out
}

/** A tree built by the library, with its blocks in a memory store. */
class LibraryTree {
  readonly store = new MemoryBlockstore()
  mst!: MST
  readonly values = new Map<string, Cid>()

  static async of(keys: string[], tag = 'init'): Promise<LibraryTree> {
    const tree = new LibraryTree()
    tree.mst = await MST.create(tree.store, [])
    for (const key of keys) {
      const cid = valueCid(`${tag}:${key}`)
      tree.mst = await tree.mst.add(key, cid)
      tree.values.set(key, cid)
    }
    await tree.persist()
    return tree
  }

  async persist(): Promise<Cid> {
    const { root, blocks } = await this.mst.getUnstoredBlocks()
    await this.store.putMany(blocks)
    return root
  }

  /**
   * Applies ops the library's way; returns the root and the diff against the old tree. Deletes
   * go last: the library applies keys in the order given, and a delete that empties the root
   * followed by a create below its layer leaves a pointer-only root (not the canonical tree,
   * which any order of the same batch must give).
   */
  async apply(ops: MstOp[]): Promise<{ root: Cid; diff: DataDiff }> {
    const prev = this.mst
    let mst = prev
    const ordered = [
      ...ops.filter((op) => op.action !== 'delete'),
      ...ops.filter((op) => op.action === 'delete'),
    ]
    for (const op of ordered) {
      if (op.action === 'create') mst = await mst.add(op.key, op.cid)
      else if (op.action === 'update') mst = await mst.update(op.key, op.cid)
      else mst = await mst.delete(op.key)
    }
    const diff = await DataDiff.of(mst, prev)
    this.mst = mst
    const root = await this.persist()
    // From storage, as a repo loads its tree after a commit (an emptied root kept in memory
    // remembers its old layer, which the next batch would build on).
    this.mst = MST.load(this.store, root)
    for (const op of ops) {
      if (op.action === 'delete') this.values.delete(op.key)
      else this.values.set(op.key, op.cid)
    }
    return { root, diff }
  }

  source() {
    return {
      getBlockSync: (cid: string) =>
        this.store.blocks.get(parseCid(cid)) ?? null,
    }
  }
}

const sorted = (cids: Cid[]) => cids.map((c) => c.toString()).sort()

const shuffle = <T>(items: T[], rand: () => number): T[] => {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

/**
 * Undoes `ops` on the library's MST loaded from `blocks` alone, in the given order, as a
 * relay inverts an event: a create is deleted, an update and a delete put `prev` back. A tree
 * the undoing empties starts again as a new empty tree: the library's emptied tree remembers its
 * old layer, and a key added to it then hangs below pointer-only nodes (undoing a batch that
 * created two keys and deleted a third, in the order create, create, delete, gave another root
 * than the tree before it; loaded from storage, as after a commit, it is canonical again).
 */
const invert = async (
  blocks: Map<string, Uint8Array>,
  root: string,
  ops: MstOp[],
  prev: Map<string, Cid>,
): Promise<string> => {
  const store = new MemoryBlockstore()
  for (const [cid, bytes] of blocks) await store.putBlock(parseCid(cid), bytes)
  let mst = MST.load(store, parseCid(root))
  for (const op of ops) {
    if (op.action === 'create') mst = await mst.delete(op.key)
    else if (op.action === 'update')
      mst = await mst.update(op.key, prev.get(op.key)!)
    else mst = await mst.add(op.key, prev.get(op.key)!)
    if ((await mst.getEntries()).length === 0) mst = await MST.create(store, [])
  }
  return (await mst.getPointer()).toString()
}

/**
 * Applies ops both ways and checks that everything the commit and its event need is the same,
 * and that the event's nodes invert the ops in three random orders. Returns how many proof
 * nodes newBlocks lacked.
 */
const checkBatch = async (tree: LibraryTree, ops: MstOp[]): Promise<number> => {
  const before = await tree.mst.getPointer()
  const prev = new Map(ops.map((op) => [op.key, tree.values.get(op.key)!]))
  const ours = applyMstOps(tree.source(), before, ops, { proofs: true })
  const lib = await tree.apply(ops)
  expect(ours.root.cid).toBe(lib.root.toString())
  expect([...ours.newBlocks.keys()].sort()).toEqual(
    sorted(lib.diff.newMstBlocks.cids()),
  )
  for (const [cid, bytes] of [...ours.newBlocks, ...ours.proof]) {
    const theirs = tree.store.blocks.get(parseCid(cid))
    expect(theirs && Buffer.from(bytes).equals(Buffer.from(theirs))).toBe(true)
  }
  expect([...ours.removed].sort()).toEqual(
    sorted(lib.diff.removedCids.toList()),
  )
  const relevant = new BlockMap()
  for (const op of ops) relevant.addMap(await tree.mst.getCoveringProof(op.key))
  const eventNodes = new Map([...ours.newBlocks, ...ours.proof])
  expect(eventNodes.size).toBe(ours.newBlocks.size + ours.proof.size)
  expect([...eventNodes.keys()].sort()).toEqual(
    [
      ...new Set([
        ...sorted(lib.diff.newMstBlocks.cids()),
        ...sorted(relevant.cids()),
      ]),
    ].sort(),
  )
  const rand = prng(ops.length * 7919 + eventNodes.size)
  for (let round = 0; round < 3; round++) {
    const order = shuffle(ops, rand)
    expect(await invert(eventNodes, ours.root.cid, order, prev)).toBe(
      before.toString(),
    )
  }
  return ours.proof.size
}

/** A random batch over the tree's keys: updates, deletes and creates of new keys. */
const randomBatch = (
  tree: LibraryTree,
  rand: () => number,
  size: number,
  round: number,
): MstOp[] => {
  const existing = [...tree.values.keys()]
  const ops = new Map<string, MstOp>()
  for (let i = 0; i < size; i++) {
    const r = rand()
    if (existing.length > 0 && r < 0.35) {
      const key = existing[Math.floor(rand() * existing.length)]
      ops.set(key, {
        action: 'update',
        key,
        cid: valueCid(`r${round}:${i}:${key}`),
      })
    } else if (existing.length > 0 && r < 0.6) {
      const key = existing[Math.floor(rand() * existing.length)]
      ops.set(key, { action: 'delete', key })
    } else {
      const key = keyOf(1_000_000 + round * 10_000 + i)
      if (!tree.values.has(key)) {
        ops.set(key, {
          action: 'create',
          key,
          cid: valueCid(`c${round}:${key}`),
        })
      }
    }
  }
  return [...ops.values()]
}

/** A small deterministic generator, so a failing seed can be replayed. */
const prng = (seed: number) => {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return (s >>> 0) / 2 ** 32
  }
}

/** Collections of different lengths, ours and others, for keys across collection boundaries. */
const COLLECTIONS = [
  ids.HoldStats,
  ids.HoldCrew,
  ids.HoldCaptain,
  'app.bsky.feed.post',
  'com.example.record',
  'a.b',
]
const KEY_CHARS = [
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:~',
]

/**
 * A key built from one of a few 64-character stems: its first 1-64 characters, the last one
 * sometimes changed, so keys share prefixes of every length and some are prefixes of others.
 */
const mixedKey = fc.record({
  collection: fc.constantFrom(...COLLECTIONS),
  stem: fc.nat(),
  length: fc.integer({ min: 1, max: 64 }),
  last: fc.option(fc.constantFrom(...KEY_CHARS), { nil: undefined }),
})
type KeySpec = typeof mixedKey extends fc.Arbitrary<infer T> ? T : never
const buildKey = (stems: string[], k: KeySpec) => {
  const stem = stems[k.stem % stems.length]
  return `${k.collection}/${stem.slice(0, k.length - 1)}${k.last ?? stem[k.length - 1]}`
}

describe('CIDs as bytes and strings', () => {
  it('match the library for dag-cbor, raw and random CIDs', async () => {
    for (let n = 0; n < 200; n++) {
      const block = createHash('sha256').update(`block ${n}`).digest()
      const ours = cborCidBytes(block)
      const theirs = await cidForCbor(block)
      expect(Buffer.from(ours).equals(Buffer.from(theirs.bytes))).toBe(true)
      expect(cidString(ours)).toBe(theirs.toString())
      const raw = createCid(0x55, 0x12, block)
      expect(cidString(raw.bytes)).toBe(raw.toString())
    }
  })
})

describe('MST node codec', () => {
  it('reads the library’s nodes, writes them back byte for byte, and refuses other bytes', async () => {
    const keys = Array.from({ length: 300 }, (_, i) => keyOf(i))
    const tree = await LibraryTree.of(keys)
    let nodes = 0
    for await (const entry of tree.mst.walk()) {
      if (!entry.isTree()) continue
      const cid = await entry.getPointer()
      const bytes = tree.store.blocks.get(cid)!
      const flat = decodeFlat(bytes)
      expect(Buffer.from(encodeFlat(flat)).equals(Buffer.from(bytes))).toBe(
        true,
      )
      nodes++
      // Every truncation, and a non-shortest head for the entry count, is refused.
      for (let cut = 0; cut < bytes.length; cut += 17) {
        expect(() => decodeNode(bytes.subarray(0, cut))).toThrow(
          /not an MST node/,
        )
      }
      const count = bytes[3] & 0x1f
      const longHead = Buffer.concat([
        bytes.subarray(0, 3),
        Buffer.from([0x98, count]),
        bytes.subarray(4),
      ])
      expect(() => decodeNode(longHead)).toThrow(/not an MST node/)
    }
    expect(nodes).toBeGreaterThan(50)
    expect(() => decodeNode(encode({ hello: 'world' }))).toThrow(
      /not an MST node/,
    )
  })
})

describe('batched MST', () => {
  it('computes the same key layer as the library', async () => {
    for (let n = 0; n < 3000; n++) {
      const key = keyOf(n)
      expect(layerOfKey(key)).toBe(await mstUtil.leadingZerosOnHash(key))
    }
  })

  it('matches the library on random trees and batches', async () => {
    let proofOnly = 0
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 0, max: 600 }),
        fc.integer({ min: 1, max: 120 }),
        async (seed, size, batch) => {
          const rand = prng(seed)
          const keys = Array.from({ length: size }, (_, i) => keyOf(i))
          const tree = await LibraryTree.of(keys)
          for (let round = 0; round < 4; round++) {
            const ops = randomBatch(tree, rand, batch, round)
            if (ops.length > 0) proofOnly += await checkBatch(tree, ops)
          }
        },
      ),
      { numRuns: 25 },
    )
    // Unchanged spine nodes were needed, not only the new ones.
    expect(proofOnly).toBeGreaterThan(0)
  })

  it('proves single changes: a delete leaving an unchanged subtree on its path, an update, a create', async () => {
    const low = keysAtLayer(0, 80)
    const mid = keysAtLayer(1, 8)
    const tree = await LibraryTree.of([...low.slice(0, 60), ...mid])
    let proofOnly = 0
    for (const key of [...mid.slice(0, 4), ...low.slice(10, 30)]) {
      proofOnly += await checkBatch(tree, [{ action: 'delete', key }])
    }
    // An updated key with subtrees on both sides: their facing spines are unchanged.
    for (const key of [...low.slice(30, 40), ...mid.slice(4)]) {
      proofOnly += await checkBatch(tree, [
        { action: 'update', key, cid: valueCid(`again:${key}`) },
      ])
    }
    for (const key of [...low.slice(60), ...mid.slice(0, 4)]) {
      proofOnly += await checkBatch(tree, [
        { action: 'create', key, cid: valueCid(`new:${key}`) },
      ])
    }
    expect(proofOnly).toBeGreaterThan(0)
  })

  it('grows the root by several layers for a high key, and trims it back when it goes', async () => {
    const low = keysAtLayer(0, 40)
    const tree = await LibraryTree.of(low)
    const [high] = keysAtLayer(3, 1)
    await checkBatch(tree, [
      { action: 'create', key: high, cid: valueCid('high') },
    ])
    expect(layerOfKey(high)).toBe(3)
    await checkBatch(tree, [{ action: 'delete', key: high }])
    expect((await tree.mst.getLayer()) as number).toBe(0)
  })

  it('splits and merges subtrees across layers', async () => {
    const mid = keysAtLayer(1, 12)
    const top = keysAtLayer(2, 4)
    const low = keysAtLayer(0, 60)
    const tree = await LibraryTree.of([...low, ...mid])
    // New top keys split the layer-1 and layer-0 nodes under them...
    await checkBatch(
      tree,
      top.map(
        (key) => ({ action: 'create', key, cid: valueCid(key) }) as MstOp,
      ),
    )
    // ...deleting layer-1 keys merges their neighbours, alongside updates below...
    await checkBatch(tree, [
      ...mid.slice(0, 6).map((key) => ({ action: 'delete', key }) as MstOp),
      ...low
        .slice(0, 10)
        .map(
          (key) =>
            ({ action: 'update', key, cid: valueCid(`u:${key}`) }) as MstOp,
        ),
    ])
    // ...and removing the top again leaves pointer-only nodes to trim.
    await checkBatch(
      tree,
      top.map((key) => ({ action: 'delete', key }) as MstOp),
    )
  })

  it('empties a tree and fills an empty one', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => keyOf(i))
    const tree = await LibraryTree.of(keys)
    await checkBatch(
      tree,
      keys.map((key) => ({ action: 'delete', key }) as MstOp),
    )
    const empty = await (await MST.create(new MemoryBlockstore())).getPointer()
    expect((await tree.mst.getPointer()).toString()).toBe(empty.toString())
    await checkBatch(
      tree,
      keys.map(
        (key) => ({ action: 'create', key, cid: valueCid(key) }) as MstOp,
      ),
    )
  })

  it('refuses an invalid key, a create of a present key, a change to a missing one, and a key twice', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => keyOf(i))
    const tree = await LibraryTree.of(keys)
    const root = await tree.mst.getPointer()
    const source = tree.source()
    const missing = keyOf(999)
    // A missing key above the root's layer, too.
    const [high] = keysAtLayer(4, 1)
    const cases: MstOp[][] = [
      [
        {
          action: 'create',
          key: 'io.atcr.hold.stats/caf\u00e9',
          cid: valueCid('x'),
        },
      ],
      [{ action: 'create', key: 'no-slash', cid: valueCid('x') }],
      [{ action: 'create', key: 'a/b/c', cid: valueCid('x') }],
      [{ action: 'update', key: high, cid: valueCid('x') }],
      [{ action: 'delete', key: high }],
      [{ action: 'create', key: keys[3], cid: valueCid('x') }],
      [{ action: 'update', key: missing, cid: valueCid('x') }],
      [{ action: 'delete', key: missing }],
      [
        { action: 'update', key: keys[1], cid: valueCid('x') },
        { action: 'delete', key: keys[1] },
      ],
    ]
    for (const ops of cases) {
      expect(() => applyMstOps(source, root, ops)).toThrow(MstOpError)
    }
  })

  it('matches the library for mixed collections and keys of 1-64 characters sharing prefixes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.string({
            unit: fc.constantFrom(...KEY_CHARS),
            minLength: 64,
            maxLength: 64,
          }),
          { minLength: 1, maxLength: 4 },
        ),
        fc.array(mixedKey, { maxLength: 300 }),
        fc.array(
          fc.array(
            fc.oneof(
              mixedKey.map((key) => ({ action: 'create' as const, key })),
              fc.record({
                action: fc.constantFrom('update' as const, 'delete' as const),
                pick: fc.nat(),
              }),
            ),
            { minLength: 1, maxLength: 60 },
          ),
          { minLength: 1, maxLength: 4 },
        ),
        async (stems, initial, rounds) => {
          const tree = await LibraryTree.of([
            ...new Set(initial.map((k) => buildKey(stems, k))),
          ])
          for (const [round, specs] of rounds.entries()) {
            const existing = [...tree.values.keys()]
            const ops = new Map<string, MstOp>()
            for (const [i, spec] of specs.entries()) {
              if (spec.action === 'create') {
                const key = buildKey(stems, spec.key)
                if (!tree.values.has(key) && !ops.has(key)) {
                  ops.set(key, {
                    action: 'create',
                    key,
                    cid: valueCid(`m${round}:${i}:${key}`),
                  })
                }
              } else if (existing.length > 0) {
                const key = existing[spec.pick % existing.length]
                if (ops.has(key)) continue
                ops.set(
                  key,
                  spec.action === 'delete'
                    ? { action: 'delete', key }
                    : {
                        action: 'update',
                        key,
                        cid: valueCid(`u${round}:${i}:${key}`),
                      },
                )
              }
            }
            if (ops.size > 0) await checkBatch(tree, [...ops.values()])
          }
        },
      ),
      { numRuns: 60 },
    )
  })
})
