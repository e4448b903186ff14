/**
 * A map bounded by entry count and, when `weigh` is given, by total weight, that drops the
 * least recently used entries first: for caches whose keys come from outside (tokens, DIDs,
 * client addresses), which must not grow with what an attacker sends. A Map iterates in
 * insertion order, so a hit moves to the end by being deleted and set again. `weigh` is asked
 * again when an entry leaves, so it must give the same weight for the same entry, and be cheap.
 */
export class Lru<K, V> {
  private readonly entries = new Map<K, V>()
  private readonly maxEntries: number
  private readonly maxWeight: number
  private readonly weigh: ((key: K, value: V) => number) | undefined
  private weight = 0
  /** Entries pushed out to make room. */
  evictions = 0

  constructor(opts: {
    maxEntries: number
    maxWeight?: number
    weigh?: (key: K, value: V) => number
  }) {
    this.maxEntries = opts.maxEntries
    this.maxWeight = opts.maxWeight ?? Infinity
    this.weigh = opts.weigh
  }

  get size(): number {
    return this.entries.size
  }

  /** Sum of the weights of the entries kept. */
  get totalWeight(): number {
    return this.weight
  }

  /** The value, marked as the most recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key)
    if (value === undefined) return undefined
    this.entries.delete(key)
    this.entries.set(key, value)
    return value
  }

  /** The value, without marking it used. */
  peek(key: K): V | undefined {
    return this.entries.get(key)
  }

  has(key: K): boolean {
    return this.entries.has(key)
  }

  /** Keeps value under key, unless it alone weighs more than the whole cache may. */
  set(key: K, value: V): void {
    this.delete(key)
    const weight = this.weigh ? this.weigh(key, value) : 1
    if (weight > this.maxWeight) return
    this.entries.set(key, value)
    this.weight += weight
    while (
      this.entries.size > this.maxEntries ||
      this.weight > this.maxWeight
    ) {
      const oldest = this.entries.keys().next().value as K
      this.delete(oldest)
      this.evictions++
    }
  }

  delete(key: K): boolean {
    const value = this.entries.get(key)
    if (value === undefined) return false
    this.entries.delete(key)
    this.weight -= this.weigh ? this.weigh(key, value) : 1
    return true
  }

  clear(): void {
    this.entries.clear()
    this.weight = 0
  }
}
