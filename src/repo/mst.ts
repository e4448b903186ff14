import { createHash } from 'node:crypto'
import type { Cid } from '@atproto/lex-data'
import { cborCidBytes, cidString } from './cid.ts'
import { decodeFlat, encodeFlat, type FlatNode, type Link } from './mst-node.ts'

/**
 * Batched changes to an atproto Merkle Search Tree.
 *
 * `@atproto/repo`'s MST applies one key at a time: each change copies the nodes on its path,
 * and a commit then serialises the new tree and diffs it against the old one. For a stats flush
 * (a batch of keys spread over a large tree) that is most of the flush. Here a whole batch is applied
 * in one walk: each node on a changed path is read, changed and serialised once, and the blocks
 * the commit adds and removes fall out of the walk, without a diff. With `proofs`, a pass over
 * the new tree then collects the unchanged nodes of each changed key's covering proof, which a
 * firehose event carries so consumers can undo the ops (`Repo.formatCommit`'s relevantBlocks).
 *
 * The tree is the canonical one of the atproto repository spec: a key's layer is the number of
 * leading zero bit-pairs of its sha256 (fanout 4); a node at layer L holds the keys of layer L in
 * its range, with a subtree at layer L-1 for each non-empty gap between them (a node with no keys
 * of its own but keys below stays as a pointer-only node); the root is at the layer of the
 * highest key. The result is checked against the library's tree, root CID and blocks alike, in
 * test/mst.test.ts.
 *
 * Everything here is synchronous: blocks come from `getBlockSync`, sha256 is node:crypto's, and
 * CIDs stay bytes and strings (cid.ts).
 */

/**
 * Blocks by CID string. A node's MST layer is passed where the walk knows it, for a source that
 * keeps nodes by layer (the writer's NodeCache).
 */
export type BlockSource = {
  getBlockSync(cid: string, layer?: number): Uint8Array | null
}

export type MstOp =
  | { action: 'create' | 'update'; key: string; cid: Cid }
  | { action: 'delete'; key: string }

export type MstResult = {
  /** The new root node's CID, as bytes and string. */
  root: { bytes: Uint8Array; cid: string }
  /** MST nodes the new tree has and the old one did not, by CID string. */
  newBlocks: Map<string, Uint8Array>
  /** The layer of each node in `newBlocks` and `proof`. */
  layers: Map<string, number>
  /** MST nodes of the old tree the new one no longer has, and the values replaced or deleted. */
  removed: Set<string>
  /**
   * With `proofs`: the unchanged nodes of the new tree (so not in `newBlocks`) that the
   * library's covering proof of some changed key holds. With `newBlocks` they are every node a
   * consumer needs to undo the ops against the old root, in any order; empty without `proofs`.
   */
  proof: Map<string, Uint8Array>
}

/** A key was missing for an update or delete, present for a create, or named twice. */
export class MstOpError extends Error {}

/** A stored node the tree points to could not be read. */
export class MissingMstBlockError extends Error {}

/**
 * A node being changed: `children[i]` is the subtree before `keys[i]`, the last one after.
 * `cid` is set when it is written (null: no keys were left in it).
 */
type Draft = {
  layer: number
  keys: string[]
  values: Link[]
  children: Ref[]
  cid?: string | null
}

/** A stored subtree (its CID's bytes), one being changed, or none. */
type Ref = Link | Draft | null

const isDraft = (ref: Ref): ref is Draft =>
  ref !== null && !(ref instanceof Uint8Array)

/** Leading zero bit-pairs of the key's sha256: the key's layer in a fanout-4 MST. */
export const layerOfKey = (key: string): number => {
  const hash = createHash('sha256').update(key).digest()
  let zeros = 0
  for (const byte of hash) {
    if (byte < 64) zeros++
    if (byte < 16) zeros++
    if (byte < 4) zeros++
    if (byte !== 0) break
    zeros++
  }
  return zeros
}

/**
 * The layer of a stored node: of its first key, else one above its subtree's, else 0 (an empty
 * tree). `read` gives a node decoded.
 */
export const layerOfNode = (
  cid: string,
  read: (cid: string) => FlatNode,
): number => {
  const node = read(cid)
  if (node.keys.length > 0) return layerOfKey(node.keys[0])
  const below = node.trees[0]
  return below === null ? 0 : layerOfNode(cidString(below), read) + 1
}

/** `collection/rkey`, in the characters the repository spec allows (ASCII only). */
const MST_KEY = /^[a-zA-Z0-9_~\-:.]+\/[a-zA-Z0-9_~\-:.]+$/

const isValidMstKey = (key: string): boolean =>
  key.length <= 1024 && MST_KEY.test(key)

/** Index of the first key >= key. */
const lowerBound = (keys: string[], key: string): number => {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (keys[mid] < key) lo = mid + 1
    else hi = mid
  }
  return lo
}

const isEmpty = (d: Draft): boolean =>
  d.keys.length === 0 && d.children[0] === null

const emptyToNull = (d: Draft): Draft | null => (isEmpty(d) ? null : d)

/**
 * Applies `ops` to the tree rooted at `root` (a stored node; an empty repo's root is a node with
 * no entries) and returns the new root with the blocks added and removed. Reads nothing it does
 * not change, except to find the layer of a root without keys of its own.
 */
export const applyMstOps = (
  source: BlockSource,
  root: Cid,
  ops: MstOp[],
  opts: { proofs?: boolean } = {},
): MstResult => new MstBatch(source).apply(root.bytes, ops, opts.proofs)

class MstBatch {
  private readonly source: BlockSource
  private readonly removed = new Set<string>()
  private readonly added = new Map<string, Uint8Array>()
  /** The layer of each node added or put in the proof. */
  private readonly nodeLayers = new Map<string, number>()
  private readonly layers = new Map<string, number>()
  /** Stored nodes decoded for the proofs, so a node shared by several keys is decoded once. */
  private readonly decoded = new Map<string, FlatNode>()

  constructor(source: BlockSource) {
    this.source = source
  }

  apply(rootCid: Link, unsorted: MstOp[], proofs = false): MstResult {
    for (const op of unsorted) {
      if (!isValidMstKey(op.key)) {
        throw new MstOpError(`not a valid MST key: ${JSON.stringify(op.key)}`)
      }
    }
    const ops = [...unsorted].sort((a, b) =>
      a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
    )
    for (let i = 1; i < ops.length; i++) {
      if (ops[i].key === ops[i - 1].key) {
        throw new MstOpError(`two changes to one key: ${ops[i].key}`)
      }
    }
    let layer = this.layerOf(rootCid)
    let root: Ref = emptyToNull(this.take(rootCid, layer))
    // A new key above the root's layer: the tree grows pointer-only nodes up to its layer, and
    // applying the key there splits them around it.
    let top = layer
    for (const op of ops) {
      if (op.action === 'create') top = Math.max(top, this.keyLayer(op.key))
    }
    while (layer < top) {
      layer++
      root = { layer, keys: [], values: [], children: [root] }
    }
    const draft: Draft = root ?? {
      layer,
      keys: [],
      values: [],
      children: [null],
    }
    this.applyTo(draft, ops)
    // The root is the highest node with keys of its own: pointer-only nodes above it go.
    let newRoot: Ref = draft
    for (;;) {
      if (newRoot === null) break
      const node: Draft = isDraft(newRoot)
        ? newRoot
        : this.peek(cidString(newRoot), layer)
      if (node.keys.length > 0 || node.children[0] === null) break
      if (!isDraft(newRoot)) this.removed.add(cidString(newRoot))
      newRoot = node.children[0]
      layer--
    }
    const rootOut =
      this.serialize(newRoot) ??
      this.write({ keys: [], values: [], trees: [null] }, 0).link
    // A node rewritten to its old content is neither new nor removed.
    for (const cid of this.removed) {
      if (this.added.delete(cid)) this.removed.delete(cid)
    }
    const proof = new Map<string, Uint8Array>()
    // An emptied tree is its new (empty) root node alone, which newBlocks has.
    if (proofs && newRoot !== null) {
      for (const op of ops) this.cover(newRoot, layer, op.key, proof)
    }
    return {
      root: { bytes: rootOut, cid: cidString(rootOut) },
      newBlocks: this.added,
      layers: this.nodeLayers,
      removed: this.removed,
      proof,
    }
  }

  /**
   * Adds to `proof` the nodes of `MST.getCoveringProof(key)` on the new tree that newBlocks
   * lacks: the key's search path and, at the node holding the key, the last-child spine of the
   * subtree before it and the first-child spine of the subtree after it (what undoing the key's
   * creation merges). A key no longer in the tree needs its path only.
   */
  private cover(
    root: Ref,
    rootLayer: number,
    key: string,
    proof: Map<string, Uint8Array>,
  ) {
    let ref = root
    for (let layer = rootLayer; ref !== null; layer--) {
      const node = this.proofNode(ref, layer, proof)
      if (node === null) return
      const i = lowerBound(node.keys, key)
      if (i < node.keys.length && node.keys[i] === key) {
        this.coverSpine(node.children[i], layer - 1, -1, proof)
        this.coverSpine(node.children[i + 1], layer - 1, 0, proof)
        return
      }
      ref = node.children[i]
    }
  }

  /** The spine of first (0) or last (-1) children down from `ref` (at layer `top`). */
  private coverSpine(
    ref: Ref,
    top: number,
    side: 0 | -1,
    proof: Map<string, Uint8Array>,
  ) {
    for (let layer = top; ref !== null; layer--) {
      const node = this.proofNode(ref, layer, proof)
      if (node === null) return
      ref = node.children.at(side) ?? null
    }
  }

  /**
   * A node of the new tree with its subtrees; one newBlocks lacks goes into `proof`: a stored
   * node the batch did not touch, or a changed one written back to its old content. Null for
   * a subtree the batch emptied.
   */
  private proofNode(
    ref: Link | Draft,
    layer: number,
    proof: Map<string, Uint8Array>,
  ): { keys: string[]; children: Ref[] } | null {
    const cid = isDraft(ref) ? ref.cid : cidString(ref)
    if (cid === undefined || cid === null) return null
    if (!this.added.has(cid) && !proof.has(cid)) {
      const bytes = this.source.getBlockSync(cid, layer)
      if (!bytes) throw new MissingMstBlockError(`MST node ${cid} is missing`)
      proof.set(cid, bytes)
      this.nodeLayers.set(cid, layer)
    }
    if (isDraft(ref)) return ref
    let node = this.decoded.get(cid)
    if (!node) {
      node = this.read(cid, layer, this.added.get(cid) ?? proof.get(cid))
      this.decoded.set(cid, node)
    }
    return { keys: node.keys, children: node.trees }
  }

  private applyTo(d: Draft, ops: MstOp[]): void {
    const below: MstOp[] = []
    for (const op of ops) {
      const opLayer = this.keyLayer(op.key)
      if (opLayer < d.layer) {
        below.push(op)
        continue
      }
      if (opLayer > d.layer) {
        // Only the root can be below a key's layer, and it grew for every create: an update
        // or delete of a key above the whole tree names a key the tree cannot hold.
        if (op.action !== 'create') {
          throw new MstOpError(`key not found: ${op.key}`)
        }
        throw new Error(`MST: key ${op.key} is above its node's layer`)
      }
      const i = lowerBound(d.keys, op.key)
      const found = i < d.keys.length && d.keys[i] === op.key
      if (op.action === 'create') {
        if (found) throw new MstOpError(`key already exists: ${op.key}`)
        const [left, right] = this.split(d.children[i], d.layer - 1, op.key)
        d.keys.splice(i, 0, op.key)
        d.values.splice(i, 0, op.cid.bytes)
        d.children.splice(i, 1, left, right)
        continue
      }
      if (!found) throw new MstOpError(`key not found: ${op.key}`)
      this.removed.add(cidString(d.values[i]))
      if (op.action === 'update') {
        d.values[i] = op.cid.bytes
      } else {
        const merged = this.merge(d.children[i], d.children[i + 1], d.layer - 1)
        d.keys.splice(i, 1)
        d.values.splice(i, 1)
        d.children.splice(i, 2, merged)
      }
    }
    // The keys below this layer, by the gap (subtree) they fall in, after this layer's changes.
    let start = 0
    while (start < below.length) {
      const gap = lowerBound(d.keys, below[start].key)
      const bound = gap < d.keys.length ? d.keys[gap] : null
      let end = start + 1
      while (end < below.length && (bound === null || below[end].key < bound))
        end++
      const child = d.children[gap]
      const draft: Draft =
        child === null
          ? { layer: d.layer - 1, keys: [], values: [], children: [null] }
          : this.take(child, d.layer - 1)
      this.applyTo(draft, below.slice(start, end))
      d.children[gap] = draft
      start = end
    }
  }

  /** The subtree's keys below `key` and above it, as two subtrees (`key` is not in it). */
  private split(ref: Ref, layer: number, key: string): [Ref, Ref] {
    if (ref === null) return [null, null]
    const d = this.take(ref, layer)
    const i = lowerBound(d.keys, key)
    const [l, r] = this.split(d.children[i], layer - 1, key)
    const left: Draft = {
      layer,
      keys: d.keys.slice(0, i),
      values: d.values.slice(0, i),
      children: [...d.children.slice(0, i), l],
    }
    const right: Draft = {
      layer,
      keys: d.keys.slice(i),
      values: d.values.slice(i),
      children: [r, ...d.children.slice(i + 1)],
    }
    return [emptyToNull(left), emptyToNull(right)]
  }

  /** One subtree with the keys of both (every key of `a` is below every key of `b`). */
  private merge(a: Ref, b: Ref, layer: number): Ref {
    if (a === null) return b
    if (b === null) return a
    const da = this.take(a, layer)
    const db = this.take(b, layer)
    const middle = this.merge(
      da.children[da.children.length - 1],
      db.children[0],
      layer - 1,
    )
    return {
      layer,
      keys: [...da.keys, ...db.keys],
      values: [...da.values, ...db.values],
      children: [...da.children.slice(0, -1), middle, ...db.children.slice(1)],
    }
  }

  /** A changed key's layer, hashed once per batch (the walk asks at every level). */
  private keyLayer(key: string): number {
    let layer = this.layers.get(key)
    if (layer === undefined) {
      layer = layerOfKey(key)
      this.layers.set(key, layer)
    }
    return layer
  }

  /** A node to change: a stored one is read, and its block leaves the tree. */
  private take(ref: Link | Draft, layer: number): Draft {
    if (isDraft(ref)) return ref
    const cid = cidString(ref)
    this.removed.add(cid)
    return this.peek(cid, layer)
  }

  /** A stored node, read without changing it. */
  private peek(cid: string, layer: number): Draft {
    const { keys, values, trees } = this.read(cid, layer)
    return { layer, keys, values, children: trees }
  }

  private read(
    cid: string,
    layer?: number,
    bytes = this.source.getBlockSync(cid, layer),
  ): FlatNode {
    if (!bytes) throw new MissingMstBlockError(`MST node ${cid} is missing`)
    try {
      return decodeFlat(bytes)
    } catch (err) {
      throw new Error(`block ${cid} is not an MST node`, { cause: err })
    }
  }

  private layerOf(cid: Link): number {
    return layerOfNode(cidString(cid), (c) => this.read(c))
  }

  /** Writes a changed subtree bottom-up; null for a subtree with no keys left. */
  private serialize(ref: Ref): Link | null {
    if (!isDraft(ref)) return ref
    const trees = ref.children.map((child) => this.serialize(child))
    if (ref.keys.length === 0 && trees[0] === null) {
      ref.cid = null
      return null
    }
    const { link, cid } = this.write(
      { keys: ref.keys, values: ref.values, trees },
      ref.layer,
    )
    ref.cid = cid
    return link
  }

  private write(node: FlatNode, layer: number): { link: Link; cid: string } {
    const bytes = encodeFlat(node)
    const link = cborCidBytes(bytes)
    const cid = cidString(link)
    this.added.set(cid, bytes)
    this.nodeLayers.set(cid, layer)
    return { link, cid }
  }
}
