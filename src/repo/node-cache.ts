/**
 * The repo's MST nodes as bytes, by CID string, bounded in bytes. When full, the nodes of the
 * lowest layer go first, the least recently used of it first.
 *
 * Every commit reads the nodes on the paths it changes, and a stats flush changes paths spread
 * over the whole tree: random block reads that mostly miss SQLite's page cache, a node being far
 * smaller than a page. Held here as bytes, the tree of a repo of a few hundred thousand records
 * fits, so after the first walk a flush reads no node from SQLite (BENCHMARKS.md, "Where the
 * memory is"). A larger tree does not: then what is worth keeping is its upper layers. A flush
 * of 200 random keys passes through nearly every node of the top layers and only 200 of the
 * bottom one's (a quarter of the nodes a layer down, fanout 4), and every node it passes is
 * replaced by a new one; least recently used alone keeps whatever the last flushes wrote, leaves
 * included, and lets the nodes one or two layers up go before a flush comes back to them
 * (BENCHMARKS.md, "The node cache keeps the upper layers"). Blocks are content-addressed, so an
 * entry can never be stale, only unused.
 *
 * A node's layer is the MST's (0 for the leaves): the caller knows it from the walk it reads the
 * node in; a block set without one counts as a leaf.
 */
export class NodeCache {
  /** Per-entry cost beyond the block itself (key string, Map slot, Buffer view), in bytes. */
  static readonly OVERHEAD = 300
  readonly maxBytes: number
  /** Entries pushed out to make room. */
  evictions = 0
  private used = 0
  private count = 0
  /** One Map per layer, index = layer, each in least recently used order. */
  private readonly layers: Map<string, Uint8Array>[] = []

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
   * The block, marked as the most recently used of its layer. With `layer`, the node is kept
   * under it from now on: one read before its layer was known (a root read to learn its layer,
   * say) was kept as a leaf.
   */
  get(cid: string, layer?: number): Uint8Array | undefined {
    const at = this.find(cid)
    if (at < 0) return undefined
    const entries = this.layers[at]
    const block = entries.get(cid)!
    entries.delete(cid)
    if (layer === undefined || layer === at) {
      entries.set(cid, block)
    } else {
      while (this.layers.length <= layer) this.layers.push(new Map())
      this.layers[layer].set(cid, block)
    }
    return block
  }

  has(cid: string): boolean {
    return this.find(cid) >= 0
  }

  /** The layer a node is kept under, or undefined when it is not kept. */
  layerOf(cid: string): number | undefined {
    const at = this.find(cid)
    return at < 0 ? undefined : at
  }

  /** Keeps a node, unless the cache is full of nodes of higher layers (or it alone is too big). */
  set(cid: string, block: Uint8Array, layer = 0): void {
    // A block that could never fit is refused before it is copied.
    if (block.byteLength + NodeCache.OVERHEAD > this.maxBytes) return
    this.delete(cid)
    // Kept in Node's pooled Buffer memory (a slice of it is kept as it is): tens of thousands
    // of blocks each with an ArrayBuffer of its own, as SQLite hands them out, make every
    // garbage collection slower; and a copy never pins a larger buffer the block is a view of.
    const pooled =
      Buffer.isBuffer(block) && block.buffer.byteLength === Buffer.poolSize
    while (this.layers.length <= layer) this.layers.push(new Map())
    this.layers[layer].set(cid, pooled ? block : Buffer.from(block))
    this.used += block.byteLength + NodeCache.OVERHEAD
    this.count++
    while (this.used > this.maxBytes) {
      const lowest = this.layers.find((entries) => entries.size > 0)!
      this.remove(lowest, lowest.keys().next().value as string)
      this.evictions++
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
    this.used = 0
    this.count = 0
  }

  /** Nodes kept, by layer (index = layer). */
  get perLayer(): number[] {
    return this.layers.map((entries) => entries.size)
  }

  private remove(entries: Map<string, Uint8Array>, cid: string): void {
    const block = entries.get(cid)!
    entries.delete(cid)
    this.used -= block.byteLength + NodeCache.OVERHEAD
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
