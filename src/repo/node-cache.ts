/**
 * The repo's MST nodes as bytes, by CID string, least recently used first out.
 *
 * Every commit reads the nodes on the paths it changes, and a stats flush changes paths spread
 * over the whole tree: at 100k records, ~800 random block reads a flush, most of them misses in
 * SQLite's page cache (a 4 KiB page for a ~250-byte node). Held here as bytes, the whole tree of
 * a 100k-record repo (27,000 nodes) is ~15 MB, so after the first walk a flush reads no node
 * from SQLite.
 * Blocks are content-addressed, so an entry can never be stale, only unused.
 */
export class NodeCache {
  private readonly map = new Map<string, Uint8Array>()
  private bytes = 0
  /**
   * Per-entry cost beyond the block itself (key string, Map slot, Buffer view): 286 bytes of
   * V8 heap per entry, measured with 100,000 entries.
   */
  static readonly OVERHEAD = 300
  readonly maxBytes: number
  /** Blocks pushed out to make room (the start-up walk stops at the first). */
  evictions = 0

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get size(): number {
    return this.map.size
  }

  get usedBytes(): number {
    return this.bytes
  }

  get(cid: string): Uint8Array | undefined {
    const block = this.map.get(cid)
    if (block === undefined) return undefined
    // Most recently used goes to the end of the Map's order.
    this.map.delete(cid)
    this.map.set(cid, block)
    return block
  }

  has(cid: string): boolean {
    return this.map.has(cid)
  }

  set(cid: string, block: Uint8Array): void {
    // A block that could never fit would only empty the cache.
    if (block.byteLength + NodeCache.OVERHEAD > this.maxBytes) return
    const old = this.map.get(cid)
    if (old !== undefined) {
      this.map.delete(cid)
      this.bytes -= old.byteLength + NodeCache.OVERHEAD
    }
    // Kept in Node's pooled Buffer memory (a slice of it is kept as it is): tens of thousands
    // of blocks each with an ArrayBuffer of its own, as SQLite hands them out, make every
    // garbage collection slower; and a copy never pins a larger buffer the block is a view of.
    const pooled =
      Buffer.isBuffer(block) && block.buffer.byteLength === Buffer.poolSize
    this.map.set(cid, pooled ? block : Buffer.from(block))
    this.bytes += block.byteLength + NodeCache.OVERHEAD
    while (this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next()
      if (oldest.done) break
      this.delete(oldest.value)
      this.evictions++
    }
  }

  delete(cid: string): void {
    const block = this.map.get(cid)
    if (block === undefined) return
    this.map.delete(cid)
    this.bytes -= block.byteLength + NodeCache.OVERHEAD
  }

  clear(): void {
    this.map.clear()
    this.bytes = 0
  }
}
