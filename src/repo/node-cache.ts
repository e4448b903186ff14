import { Lru } from '../lru.ts'

/**
 * The repo's MST nodes as bytes, by CID string, bounded in bytes, least recently used first out.
 *
 * Every commit reads the nodes on the paths it changes, and a stats flush changes paths spread
 * over the whole tree: random block reads that mostly miss SQLite's page cache, a node being far
 * smaller than a page. Held here as bytes, the whole tree of a large repo fits in a few
 * megabytes, so after the first walk a flush reads no node from SQLite (BENCHMARKS.md, "Where
 * the memory is"). Blocks are content-addressed, so an entry can never be stale, only unused.
 */
export class NodeCache extends Lru<string, Uint8Array> {
  /** Per-entry cost beyond the block itself (key string, Map slot, Buffer view), in bytes. */
  static readonly OVERHEAD = 300
  readonly maxBytes: number

  constructor(maxBytes: number) {
    super({
      maxEntries: Infinity,
      maxWeight: maxBytes,
      weigh: (_cid, block) => block.byteLength + NodeCache.OVERHEAD,
    })
    this.maxBytes = maxBytes
  }

  get usedBytes(): number {
    return this.totalWeight
  }

  override set(cid: string, block: Uint8Array): void {
    // A block that could never fit is refused before it is copied.
    if (block.byteLength + NodeCache.OVERHEAD > this.maxBytes) return
    // Kept in Node's pooled Buffer memory (a slice of it is kept as it is): tens of thousands
    // of blocks each with an ArrayBuffer of its own, as SQLite hands them out, make every
    // garbage collection slower; and a copy never pins a larger buffer the block is a view of.
    const pooled =
      Buffer.isBuffer(block) && block.buffer.byteLength === Buffer.poolSize
    super.set(cid, pooled ? block : Buffer.from(block))
  }
}
