import type { io } from '../generated/lexicons/index.ts'
import { toHoldError, type HoldError } from './errors.ts'

type StatsView = io.atcr.hold.defs.StatsView

export type HoldResult =
  | { hold: string; ok: true; stats: StatsView; ms: number }
  | { hold: string; ok: false; error: HoldError; timedOut: boolean; ms: number }

export type AggregatedStats = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
  /** One entry per distinct hold DID asked, in the order given. */
  holds: HoldResult[]
  /** The holds that failed or timed out (empty when all answered). */
  failed: string[]
  /** When this result was computed (ms since the epoch); cached results keep it. */
  at: number
}

const laterOf = (a?: string, b?: string): string | undefined => {
  if (!a) return b
  if (!b) return a
  return Date.parse(b) > Date.parse(a) ? b : a
}

/**
 * Asks every hold for the pair's counts in parallel, each within `timeoutMs`, and sums those
 * that answered; the others are listed in `failed`, with their errors in `holds`.
 */
export const aggregateStats = async (
  pair: { did: string; repository: string },
  holds: string[],
  timeoutMs: number,
  getStats: (holdDid: string, signal: AbortSignal) => Promise<StatsView>,
): Promise<AggregatedStats> => {
  const results = await Promise.all(
    holds.map(async (holdDid): Promise<HoldResult> => {
      const started = performance.now()
      const signal = AbortSignal.timeout(timeoutMs)
      try {
        const stats = await getStats(holdDid, signal)
        return {
          hold: holdDid,
          ok: true,
          stats,
          ms: performance.now() - started,
        }
      } catch (err) {
        const error = toHoldError(err, { hold: holdDid, signal })
        return {
          hold: holdDid,
          ok: false,
          error,
          timedOut: error.timedOut,
          ms: performance.now() - started,
        }
      }
    }),
  )
  const sum: AggregatedStats = {
    ...pair,
    pullCount: 0,
    pushCount: 0,
    holds: results,
    failed: [],
    at: Date.now(),
  }
  for (const r of results) {
    if (!r.ok) {
      sum.failed.push(r.hold)
      continue
    }
    sum.pullCount += r.stats.pullCount
    sum.pushCount += r.stats.pushCount
    const lastPull = laterOf(sum.lastPull, r.stats.lastPull)
    const lastPush = laterOf(sum.lastPush, r.stats.lastPush)
    if (lastPull) sum.lastPull = lastPull
    if (lastPush) sum.lastPush = lastPush
  }
  return sum
}
