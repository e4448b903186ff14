import type { Database } from '../db.ts'
import type { Logger } from '../logger.ts'
import type { TrendingWindows } from './trending.ts'

/**
 * Each pair's pulls of its recent days, for the trending windows at start (the open days
 * through stats_counter_open_idx, whose condition the second part repeats).
 */
export const RECENT_PULLS_SQL = `
  SELECT did, repository, day, pulls FROM stats_day WHERE day > ?1 AND pulls > 0
  UNION ALL
  SELECT did, repository, open_day, open_pulls FROM stats_counter
  WHERE open_day > ?1 AND (open_pulls <> 0 OR open_pushes <> 0) AND open_pulls > 0`
/** Rows of RECENT_PULLS_SQL read between turns of the event loop. */
const LOAD_BATCH = 10_000

/**
 * Reads the day rows after `after` into the trending windows, a batch per turn of the event
 * loop, so a large history does not hold up the start. The rows come from a snapshot taken
 * now (the first read happens before the constructor returns); persists that commit later add
 * their own pulls, which the snapshot does not have, so the windows end up exact either way.
 */
export class TrendingLoad {
  /** Resolves once the windows hold every recent day (also when the read failed or stopped). */
  readonly done: Promise<void>
  private stopped = false
  /** Pairs reset while the windows are read: their older rows are left out. */
  private forgotten: { did: string; repository: string | null }[] | undefined =
    []

  constructor(
    database: Database,
    trend: TrendingWindows,
    after: number,
    log: Logger,
  ) {
    this.done = this.load(database, trend, after, log)
  }

  /** A reset committed (all of a DID's repositories, or one): rows still to read are skipped. */
  forget(did: string, repository: string | null): void {
    this.forgotten?.push({ did, repository })
  }

  stop(): void {
    this.stopped = true
  }

  private async load(
    database: Database,
    trend: TrendingWindows,
    after: number,
    log: Logger,
  ): Promise<void> {
    try {
      await database.readSnapshot(async (reader) => {
        let n = 0
        const rows = reader
          .prepare(RECENT_PULLS_SQL)
          .iterate(after) as Iterable<{
          did: string
          repository: string
          day: number
          pulls: number
        }>
        for (const r of rows) {
          if (this.stopped) return
          if (!this.forgottenWhileLoading(r.did, r.repository)) {
            trend.add(r.did, r.repository, r.day, r.pulls)
          }
          if (++n % LOAD_BATCH === 0) await new Promise(setImmediate)
        }
      })
    } catch (err) {
      if (!this.stopped)
        log.error({ err }, 'reading the trending windows failed')
    } finally {
      this.forgotten = undefined
    }
  }

  private forgottenWhileLoading(did: string, repository: string): boolean {
    return (
      this.forgotten?.some(
        (f) =>
          f.did === did &&
          (f.repository === null || f.repository === repository),
      ) ?? false
    )
  }
}
