import { cidString } from './cid.ts'
import { layerOfNode, MissingMstBlockError, type BlockSource } from './mst.ts'
import { decodeFlat, decodeNode } from './mst-node.ts'

/**
 * The repo's MST nodes as bytes, by CID string, bounded in bytes. When full, the tree's top
 * layers stay, as many whole layers as fit in half the cache; below them, the least recently
 * used node goes first.
 *
 * Every commit reads the nodes on the paths it changes, and a stats flush changes paths spread
 * over the whole tree: random block reads that mostly miss SQLite's page cache, a node being far
 * smaller than a page. Held here as bytes, the tree of a repo of a few hundred thousand records
 * fits, so after the first walk a flush reads no node from SQLite (BENCHMARKS.md, "Where the
 * memory is"). A larger tree does not. A flush passes through nearly every node of the top
 * layers and, for keys at random, only 200 of the bottom one's (each layer down has four times
 * the nodes), and every node it passes is replaced by a new one: recency alone lets the nodes
 * one or two layers up go before a flush comes back to them. But the pairs pulled in a minute
 * are often the ones pulled the minute before (the popular images), whose leaves recency keeps. So the top layers
 * are held apart, and the rest of the cache is least recently used (BENCHMARKS.md, "The node
 * cache holds the top layers apart"). Blocks are content-addressed, so an entry can never be stale,
 * only unused.
 *
 * A node's layer is the MST's (0 for the leaves): the caller knows it from the walk it reads the
 * node in; a block set without one counts as a leaf.
 */
type Entry = { block: Uint8Array; touched: number }

export class NodeCache {
  /** Per-entry cost beyond the block itself (key string, Map slot, Buffer view), in bytes. */
  static readonly OVERHEAD = 300
  readonly maxBytes: number
  /** Entries pushed out to make room. */
  evictions = 0
  private used = 0
  private count = 0
  private clock = 0
  /** One Map per layer, index = layer, each in least recently used order. */
  private readonly layers: Map<string, Entry>[] = []
  /** Bytes held per layer (as `usedBytes` counts them). */
  private readonly layerBytes: number[] = []

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get usedBytes(): number {
    return this.used
  }

  get size(): number {
    return this.count
  }

  /**
   * The block, marked as the most recently used. With `layer`, the node is kept under it from
   * now on: one read before its layer was known (a root read to learn its layer, say) was kept
   * as a leaf.
   */
  get(cid: string, layer?: number): Uint8Array | undefined {
    const at = this.find(cid)
    if (at < 0) return undefined
    const entry = this.layers[at].get(cid)!
    this.layers[at].delete(cid)
    entry.touched = ++this.clock
    const to = layer ?? at
    if (to !== at) {
      const weight = entry.block.byteLength + NodeCache.OVERHEAD
      this.layerBytes[at] -= weight
      this.layerBytes[this.grow(to)] += weight
    }
    this.layers[to].set(cid, entry)
    return entry.block
  }

  has(cid: string): boolean {
    return this.find(cid) >= 0
  }

  /** The layer a node is kept under, or undefined when it is not kept. */
  layerOf(cid: string): number | undefined {
    const at = this.find(cid)
    return at < 0 ? undefined : at
  }

  /** Keeps a node, unless it alone is too big or it would be the first to go. */
  set(cid: string, block: Uint8Array, layer = 0): void {
    const weight = block.byteLength + NodeCache.OVERHEAD
    // A block that could never fit is refused before it is copied.
    if (weight > this.maxBytes) return
    this.delete(cid)
    const entry: Entry = { block, touched: ++this.clock }
    this.layers[this.grow(layer)].set(cid, entry)
    this.layerBytes[layer] += weight
    this.used += weight
    this.count++
    while (this.used > this.maxBytes) {
      const entries = this.layers[this.victimLayer()]
      this.remove(entries, entries.keys().next().value as string)
      this.evictions++
    }
    // Copied only once it is known to stay. Kept in Node's pooled Buffer memory (a slice of
    // it is kept as it is): tens of thousands of blocks each with an ArrayBuffer of its own, as
    // SQLite hands them out, make every garbage collection slower; and a copy never pins a
    // larger buffer the block is a view of.
    if (
      this.layers[layer].get(cid) === entry &&
      !(Buffer.isBuffer(block) && block.buffer.byteLength === Buffer.poolSize)
    ) {
      entry.block = Buffer.from(block)
    }
  }

  delete(cid: string): boolean {
    const at = this.find(cid)
    if (at < 0) return false
    this.remove(this.layers[at], cid)
    return true
  }

  clear(): void {
    this.layers.length = 0
    this.layerBytes.length = 0
    this.used = 0
    this.count = 0
  }

  /** Nodes kept, by layer (index = layer). */
  get perLayer(): number[] {
    return this.layers.map((entries) => entries.size)
  }

  /**
   * Where the next node to go is: below the top layers that fit in half the cache, the layer
   * whose least recently used node is the oldest; when every node is in those, the lowest.
   */
  private victimLayer(): number {
    let top = this.layers.length
    let held = 0
    while (top > 0 && held + this.layerBytes[top - 1] <= this.maxBytes / 2) {
      top--
      held += this.layerBytes[top]
    }
    let victim = -1
    let oldest = Infinity
    for (let at = 0; at < top; at++) {
      const first = this.layers[at].values().next().value
      if (first !== undefined && first.touched < oldest) {
        oldest = first.touched
        victim = at
      }
    }
    return victim >= 0
      ? victim
      : this.layers.findIndex((entries) => entries.size > 0)
  }

  /** Makes room for `layer` in the per-layer arrays; returns it. */
  private grow(layer: number): number {
    while (this.layers.length <= layer) {
      this.layers.push(new Map())
      this.layerBytes.push(0)
    }
    return layer
  }

  private remove(entries: Map<string, Entry>, cid: string): void {
    const entry = entries.get(cid)!
    entries.delete(cid)
    const weight = entry.block.byteLength + NodeCache.OVERHEAD
    this.layerBytes[this.layers.indexOf(entries)] -= weight
    this.used -= weight
    this.count--
  }

  /** The layer holding cid, or -1: the top first, where most lookups land. */
  private find(cid: string): number {
    for (let at = this.layers.length - 1; at >= 0; at--) {
      if (this.layers[at].has(cid)) return at
    }
    return -1
  }
}

/**
 * Reads the tree under `root()` (the head's, read again at each pass) into `cache` through
 * `source` (which keeps what it reads in the cache), a layer at a time from the top: a tree
 * larger than the cache leaves its top layers in it, which every flush passes through. Each
 * layer is a depth-first pass from the root through the layers above it (read already: a decode
 * each), so no list of a whole layer's CIDs is ever held (at a million records the leaves'
 * would be tens of MB of strings). Stops once the cache is full, or when `stopped()`; yields to
 * other work every `sliceNodes` nodes. Resolves with the nodes read (each layer counted once).
 */
export const readTreeIntoCache = async (
  cache: NodeCache,
  source: BlockSource,
  root: () => Uint8Array,
  opts: { sliceNodes?: number; stopped?: () => boolean } = {},
): Promise<number> => {
  const slice = opts.sliceNodes ?? 250
  const evictionsBefore = cache.evictions
  let visited = 0
  let sinceTurn = 0
  for (let target = layerOfRoot(source, root()); target >= 0; target--) {
    // A commit during a pass can replace a node the pass has not reached; its unchanged
    // subtrees are still the tree's, reached only through the new node. So a pass that met
    // a replaced node is followed by another from the new head.
    for (let pass = 0; pass < 3; pass++) {
      let replaced = false
      let read = 0
      const head = root()
      const stack: [cid: string, layer: number][] = [
        [cidString(head), layerOfRoot(source, head)],
      ]
      while (stack.length > 0) {
        if (++sinceTurn >= slice) {
          sinceTurn = 0
          await new Promise((resolve) => setImmediate(resolve))
        }
        if (opts.stopped?.()) return visited + read
        const [cid, layer] = stack.pop()!
        if (layer < target) continue
        const block = source.getBlockSync(cid, layer)
        if (!block) {
          replaced = true
          continue
        }
        // Full: reading on would only push out nodes read before.
        if (cache.evictions !== evictionsBefore) return visited + read
        if (layer === target) {
          read++
          continue
        }
        const node = decodeNode(block)
        if (node.l) stack.push([cidString(node.l), layer - 1])
        for (const entry of node.e) {
          if (entry.t) stack.push([cidString(entry.t), layer - 1])
        }
      }
      if (!replaced || pass === 2) {
        visited += read
        break
      }
    }
  }
  return visited
}

/** The layer of a tree's root; 0 when a node on the way down is gone (the walk meets it). */
const layerOfRoot = (source: BlockSource, root: Uint8Array): number => {
  try {
    return layerOfNode(cidString(root), (cid) => {
      const block = source.getBlockSync(cid)
      if (!block) throw new MissingMstBlockError(`MST node ${cid} is missing`)
      return decodeFlat(block)
    })
  } catch (err) {
    if (err instanceof MissingMstBlockError) return 0
    throw err
  }
}
