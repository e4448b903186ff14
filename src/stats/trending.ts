const DAY_MS = 86_400_000
/** Day slots kept per pair: the longest window (30 days) and room for the day that turns. */
const SLOTS = 32
/** A window's ranking is worked out again at most this often (and only when asked for). */
export const RANKING_FRESH_MS = 5000

/** A pair's place in a ranking. */
export type Ranked = { did: string; repository: string; pulls: number }

type Ranking = {
  today: number
  at: number
  /** Pair indexes, most pulls first, then by DID and repository, descending. */
  order: Int32Array
  pulls: Float64Array
}

/**
 * Every pair's pulls of its last SLOTS days, in memory (loaded from the day rows at start, then
 * added to as each persist commits), and per window the pairs ranked by their pulls in it,
 * worked out when asked for and kept RANKING_FRESH_MS. A count is an add to a typed array;
 * a listTrending page is a binary search and a slice of the kept ranking.
 */
export class TrendingWindows {
  private readonly index = new Map<string, number>()
  private dids: string[] = []
  private repos: string[] = []
  private counts = new Int32Array(SLOTS * 1024)
  private slotDay = new Int32Array(SLOTS * 1024).fill(-1)
  private readonly rankings = new Map<number, Ranking>()

  /** Adds a day's pulls of a pair (a day more than SLOTS days back is ignored). */
  add(did: string, repository: string, day: number, pulls: number): void {
    const key = `${did} ${repository}`
    let i = this.index.get(key)
    if (i === undefined) {
      i = this.dids.length
      this.index.set(key, i)
      this.dids.push(did)
      this.repos.push(repository)
      if ((i + 1) * SLOTS > this.counts.length) this.grow()
    }
    const slot = i * SLOTS + (day % SLOTS)
    const held = this.slotDay[slot]
    if (held === day) this.counts[slot] += pulls
    else if (held < day) {
      this.slotDay[slot] = day
      this.counts[slot] = pulls
    }
  }

  private grow(): void {
    const counts = new Int32Array(this.counts.length * 2)
    counts.set(this.counts)
    const slotDay = new Int32Array(this.slotDay.length * 2).fill(-1)
    slotDay.set(this.slotDay)
    this.counts = counts
    this.slotDay = slotDay
  }

  /** Zeroes a DID's pairs (all, or one repository): a reset. */
  forget(did: string, repository: string | null): void {
    for (let i = 0; i < this.dids.length; i++) {
      if (
        this.dids[i] === did &&
        (repository === null || this.repos[i] === repository)
      ) {
        this.counts.fill(0, i * SLOTS, (i + 1) * SLOTS)
      }
    }
    this.rankings.clear()
  }

  /** The pairs with pulls in the `days` days up to the day of `now`, after `after`, `limit` of them. */
  page(
    days: number,
    now: number,
    limit: number,
    after: Ranked | undefined,
  ): Ranked[] {
    const r = this.ranking(days, Math.floor(now / DAY_MS), now)
    let lo = 0
    if (after) {
      // The first pair ranked after the cursor's (pulls, DID, repository), all descending.
      let hi = r.order.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        const i = r.order[mid]
        if (this.compare(r.pulls[i], i, after) > 0) hi = mid
        else lo = mid + 1
      }
    }
    const out: Ranked[] = []
    for (let k = lo; k < r.order.length && out.length < limit; k++) {
      const i = r.order[k]
      out.push({
        did: this.dids[i],
        repository: this.repos[i],
        pulls: r.pulls[i],
      })
    }
    return out
  }

  /** Negative when pair i (with `pulls`) ranks before `at`, positive after, 0 when it is `at`. */
  private compare(pulls: number, i: number, at: Ranked): number {
    if (pulls !== at.pulls) return pulls > at.pulls ? -1 : 1
    const did = this.dids[i]
    if (did !== at.did) return did > at.did ? -1 : 1
    const repo = this.repos[i]
    if (repo !== at.repository) return repo > at.repository ? -1 : 1
    return 0
  }

  private ranking(days: number, today: number, now: number): Ranking {
    const kept = this.rankings.get(days)
    if (kept && kept.today === today && now - kept.at < RANKING_FRESH_MS) {
      return kept
    }
    const n = this.dids.length
    const pulls = new Float64Array(n)
    const active: number[] = []
    const first = today - days + 1
    for (let i = 0; i < n; i++) {
      let sum = 0
      for (let s = i * SLOTS, end = s + SLOTS; s < end; s++) {
        const day = this.slotDay[s]
        if (day >= first && day <= today) sum += this.counts[s]
      }
      if (sum > 0) {
        pulls[i] = sum
        active.push(i)
      }
    }
    const dids = this.dids
    const repos = this.repos
    active.sort(
      (a, b) =>
        pulls[b] - pulls[a] ||
        (dids[a] > dids[b] ? -1 : dids[a] < dids[b] ? 1 : 0) ||
        (repos[a] > repos[b] ? -1 : repos[a] < repos[b] ? 1 : 0),
    )
    const r = { today, at: now, order: Int32Array.from(active), pulls }
    this.rankings.set(days, r)
    return r
  }
}
