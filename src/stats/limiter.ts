/**
 * HOLD_STATS_MAX_PER_MINUTE: counted calls per client in fixed one-minute windows. A call over
 * the limit is still served, just not counted, and `dropped` says how many were not.
 */
export class CountLimiter {
  private readonly max: number
  private window = -1
  private readonly counts = new Map<string, number>()
  dropped = 0

  /** max 0 means no limit. */
  constructor(max: number) {
    this.max = max
  }

  get enabled(): boolean {
    return this.max > 0
  }

  allow(client: string, now = Date.now()): boolean {
    if (this.max === 0) return true
    const window = Math.floor(now / 60_000)
    if (window !== this.window) {
      // Only the current window matters, so memory is bounded by one minute's clients.
      this.window = window
      this.counts.clear()
    }
    const n = (this.counts.get(client) ?? 0) + 1
    if (n > this.max) {
      this.dropped++
      return false
    }
    this.counts.set(client, n)
    return true
  }
}

type Bucket = { tokens: number; at: number }

/**
 * A token bucket per key: each key may take `burst` (by default `perHour`) at once, and one
 * more every 3600 / perHour seconds after that. `refused` counts the takes that found the bucket empty.
 * Memory is bounded: buckets that have filled up again are the same as no bucket and are
 * swept out, and past `maxKeys` the least recently used are forgotten (a forgotten key starts
 * full again, which is the cost of the bound).
 */
export class TokenBuckets {
  private readonly capacity: number
  private readonly perMs: number
  private readonly maxKeys: number
  private readonly buckets = new Map<string, Bucket>()
  private sweptAt = 0
  refused = 0

  /** perHour 0 means no limit. */
  constructor(perHour: number, maxKeys = 100_000, burst = perHour) {
    this.capacity = perHour > 0 ? Math.max(1, burst) : 0
    this.perMs = perHour / 3_600_000
    this.maxKeys = maxKeys
  }

  get enabled(): boolean {
    return this.capacity > 0
  }

  /** Takes one token from key's bucket; false (and nothing taken) when it is empty. */
  take(key: string, now = Date.now()): boolean {
    if (this.capacity === 0) return true
    const bucket = this.buckets.get(key)
    let tokens = this.capacity
    if (bucket) {
      tokens = Math.min(
        this.capacity,
        bucket.tokens + (now - bucket.at) * this.perMs,
      )
      // Re-inserted below, so the map's order is least recently used first.
      this.buckets.delete(key)
    }
    const allowed = tokens >= 1
    if (allowed) tokens -= 1
    else this.refused++
    this.buckets.set(key, { tokens, at: now })
    if (this.buckets.size > this.maxKeys) this.shrink(now)
    return allowed
  }

  /**
   * Takes one token from the bucket of each key, or none when any of them is empty. Returns 0
   * when taken, else the milliseconds until every key has a token again.
   */
  takeAll(keys: string[], now = Date.now()): number {
    if (this.capacity === 0) return 0
    const wait = Math.max(0, ...keys.map((key) => this.waitMs(key, now)))
    if (wait > 0) {
      this.refused++
      return wait
    }
    for (const key of keys) this.take(key, now)
    return 0
  }

  /** Gives back a token taken from key's bucket (one it turned out not to need). */
  refund(key: string): void {
    const bucket = this.buckets.get(key)
    if (bucket) bucket.tokens = Math.min(this.capacity, bucket.tokens + 1)
  }

  /** Milliseconds until key has a token again (0 when it has one now). */
  waitMs(key: string, now = Date.now()): number {
    const bucket = this.buckets.get(key)
    if (!bucket || this.capacity === 0) return 0
    const tokens = bucket.tokens + (now - bucket.at) * this.perMs
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.perMs)
  }

  /** Keys with a bucket that is not full (tests, metrics). */
  get size(): number {
    return this.buckets.size
  }

  private shrink(now: number): void {
    // A sweep walks every bucket: at most once a second, however many keys arrive.
    if (now - this.sweptAt >= 1000) {
      this.sweptAt = now
      for (const [key, b] of this.buckets) {
        if (b.tokens + (now - b.at) * this.perMs >= this.capacity) {
          this.buckets.delete(key)
        }
      }
    }
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= this.maxKeys) break
      this.buckets.delete(key)
    }
  }
}
