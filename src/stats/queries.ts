import {
  prepareAll,
  returnArrays,
  type Database,
  type Statements,
} from '../db.ts'
import {
  toView,
  VIEW_SELECT,
  viewRowOf,
  type StatsView,
  type ViewRow,
} from './counter-row.ts'
import type { CounterStore } from './counter-store.ts'
import type { History } from './history.ts'
import type { RefCounts } from './refs.ts'
import type { StatsPublisher } from './publisher.ts'
import type { TopPairs } from './top-pairs.ts'

/** The hold's totals, kept by triggers (the status page reads them at every refresh). */
export const TOTALS_SQL =
  'SELECT pairs, pulls, pushes FROM stats_total WHERE id = 1'

const GET = 'WHERE c.did = ? AND c.repository = ?'
const LIST =
  'WHERE c.did = ? AND c.repository > ? ORDER BY c.repository LIMIT ?'

const SQL = {
  get: `${VIEW_SELECT.withBaselines} ${GET}`,
  list: `${VIEW_SELECT.withBaselines} ${LIST}`,
  listOwn: `${VIEW_SELECT.own} ${LIST}`,
  anyBaseline: 'SELECT 1 FROM stats_baseline LIMIT 1',
  totals: TOTALS_SQL,
  summary: `
    SELECT (SELECT count(*) FROM stats_counter) AS counters,
           (SELECT count(*) FROM stats_baseline) AS baselines`,
}

/** The parts of the stats service that queries and maintenance work with. */
export type StatsParts = {
  counters: CounterStore
  top: TopPairs
  publisher: StatsPublisher
  history: History | undefined
  refs: RefCounts
}

/**
 * What the hold answers about counts: the counter table with its baselines, plus what is still
 * pending in memory, so a count is visible as soon as it is accepted.
 */
export class StatsQueries {
  private readonly sql: Statements<keyof typeof SQL>
  private readonly parts: StatsParts

  constructor(database: Database, parts: StatsParts) {
    this.parts = parts
    this.sql = prepareAll(database.db, SQL)
    // Read by viewRowOf.
    returnArrays(this.sql.get, this.sql.list, this.sql.listOwn)
  }

  get(did: string, repository: string): StatsView {
    return toView(
      this.row(did, repository),
      this.parts.counters.pendingOf(did, repository),
      did,
      repository,
    )
  }

  private row(did: string, repository: string): ViewRow | null {
    const row = this.sql.get.get(did, repository) as unknown[] | undefined
    return row ? viewRowOf(row) : null
  }

  /** A DID's pairs by repository, after the cursor `after`. */
  list(
    did: string,
    limit: number,
    after = '',
  ): { stats: StatsView[]; cursor?: string } {
    // Most holds never import counts: then a page need not join stats_baseline, a third of
    // the query's time (one look-up of an empty table answers whether it must).
    const withBaselines = this.sql.anyBaseline.get() !== undefined
    const rows = (
      (withBaselines ? this.sql.list : this.sql.listOwn).all(
        did,
        after,
        limit,
      ) as unknown as unknown[][]
    ).map(viewRowOf)
    const byRepo = new Map<string, StatsView>()
    for (const row of rows) {
      byRepo.set(
        row.repository,
        toView(
          row,
          this.parts.counters.pendingOf(did, row.repository),
          did,
          row.repository,
        ),
      )
    }
    // Pairs counted since the last persist may not be in the table yet.
    for (const d of this.parts.counters.pendingDeltas()) {
      if (d.did === did && d.repository > after && !byRepo.has(d.repository)) {
        const row = this.row(did, d.repository)
        byRepo.set(d.repository, toView(row, d, did, d.repository))
      }
    }
    const stats = [...byRepo.values()]
      .sort((a, b) => (a.repository < b.repository ? -1 : 1))
      .slice(0, limit)
    const more = rows.length === limit || byRepo.size > limit
    return {
      stats,
      cursor:
        more && stats.length > 0
          ? stats[stats.length - 1].repository
          : undefined,
    }
  }

  /**
   * The pairs with the most pulls (then pushes) on this hold, own and imported counts added.
   * Up to TOP_KEPT of them come from memory (one read of the whole table first, and again after
   * an import or a reset); more are a sort of the table.
   */
  top(limit: number): StatsView[] {
    this.parts.counters.persistIfWritable()
    return this.parts.top
      .rows(limit)
      .map((row) => toView(row, undefined, row.did, row.repository))
  }

  /** Pairs, pulls and pushes across the hold, own and imported counts added (status page). */
  overall(): { pairs: number; pulls: number; pushes: number } {
    this.parts.counters.persistIfWritable()
    return this.sql.totals.get() as {
      pairs: number
      pulls: number
      pushes: number
    }
  }

  /** Counter and baseline totals, and what is not yet in the table or the repo. */
  summary(): {
    counters: number
    baselines: number
    pendingPairs: number
    dirtyCounters: number
  } {
    const { counters, baselines } = this.sql.summary.get() as {
      counters: number
      baselines: number
    }
    return {
      counters,
      baselines,
      pendingPairs: this.parts.counters.pendingPairs,
      dirtyCounters: this.parts.publisher.dirtyCounters(),
    }
  }
}
