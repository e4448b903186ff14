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
