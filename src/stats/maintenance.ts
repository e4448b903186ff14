import { prepareAll, type Database, type Statements } from '../db.ts'
import type { Logger } from '../logger.ts'
import type { Baseline } from './baseline.ts'
import { iso } from './counter-row.ts'
import type { CounterStore } from './counter-store.ts'
import type { History } from './history.ts'
import type { RefCounts } from './refs.ts'
import type { StatsPublisher } from './publisher.ts'
import type { StatsParts } from './queries.ts'
import type { TopPairs } from './top-pairs.ts'

export type ImportResult = { changed: number; unchanged: number }
export type ResetResult = { pairs: number; records: number; commits: number }

type BaselineRow = {
  pull_count: number
  push_count: number
  last_pull: string | null
  last_push: string | null
}

const SQL = {
  getBaseline:
    'SELECT pull_count, push_count, last_pull, last_push FROM stats_baseline WHERE did = ? AND repository = ?',
  putBaseline: `
    INSERT INTO stats_baseline
      (did, repository, pull_count, push_count, last_pull, last_push, imported_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (did, repository) DO UPDATE SET
      pull_count = excluded.pull_count, push_count = excluded.push_count,
      last_pull = excluded.last_pull, last_push = excluded.last_push,
      imported_at = excluded.imported_at`,
  touch: `
    INSERT INTO stats_counter (did, repository, created_at, updated_at)
    VALUES (?1, ?2, ?3, ?3)
    ON CONFLICT (did, repository) DO UPDATE SET
      updated_at = CASE WHEN excluded.updated_at > updated_at THEN excluded.updated_at ELSE updated_at END,
      version = version + 1`,
  pairs: `
    SELECT did, repository FROM stats_counter WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)
    UNION
    SELECT did, repository FROM stats_baseline WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)
    ORDER BY repository`,
  deleteCounters:
    'DELETE FROM stats_counter WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
  deleteBaselines:
    'DELETE FROM stats_baseline WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
}

/**
 * What the operator changes in the counts (the admin API): imported baselines, and resets.
 * Imported counts (`stats_baseline`, one row per pair) are added to the hold's own in every read
 * and record; changing a baseline marks the pair's counter changed, creating it when the pair
 * has none, so the next flush writes its record.
 */
export class StatsMaintenance {
  private readonly sql: Statements<keyof typeof SQL>

  private readonly database: Database
  private readonly counters: CounterStore
  private readonly top: TopPairs
  private readonly publisher: StatsPublisher
  private readonly history: History | undefined
  private readonly refs: RefCounts
  private readonly log: Logger

  constructor(database: Database, parts: StatsParts, log: Logger) {
    this.database = database
    this.counters = parts.counters
    this.top = parts.top
    this.publisher = parts.publisher
    this.history = parts.history
    this.refs = parts.refs
    this.log = log
    this.sql = prepareAll(database.db, SQL)
  }

  /** The pair's baseline; zeros when it has none. */
  baselineOf(did: string, repository: string): Baseline {
    const row = this.sql.getBaseline.get(did, repository) as
      BaselineRow | undefined
    return {
      did,
      repository,
      pullCount: row?.pull_count ?? 0,
      pushCount: row?.push_count ?? 0,
      ...(row?.last_pull ? { lastPull: row.last_pull } : {}),
      ...(row?.last_push ? { lastPush: row.last_push } : {}),
    }
  }

  /**
   * Sets the baselines of the pairs given (replacing what an earlier import set), in one
   * transaction. A pair whose baseline changes is marked for the next flush; an identical one
   * is left alone, so importing the same data twice writes nothing.
   */
  importBaselines(rows: Baseline[], now = Date.now()): ImportResult {
    const at = iso(now)
    let changed = 0
    this.database.transaction(() => {
      for (const b of rows) {
        const cur = this.sql.getBaseline.get(b.did, b.repository) as
          BaselineRow | undefined
        if (
          cur &&
          cur.pull_count === b.pullCount &&
          cur.push_count === b.pushCount &&
          cur.last_pull === (b.lastPull ?? null) &&
          cur.last_push === (b.lastPush ?? null)
        ) {
          continue
        }
        this.sql.putBaseline.run(
          b.did,
          b.repository,
          b.pullCount,
          b.pushCount,
          b.lastPull ?? null,
          b.lastPush ?? null,
          at,
        )
        this.sql.touch.run(b.did, b.repository, at)
        changed++
      }
    })
    if (changed > 0) {
      // A baseline may have gone down: the kept most pulled pairs are read again.
      this.top.forget()
      this.log.info({ changed, rows: rows.length }, 'imported stats baselines')
    }
    return { changed, unchanged: rows.length - changed }
  }

  /**
   * Zeroes a DID's counters and baselines (all its repositories, or one) and deletes their
   * records: spam clean-up, account deletion. Counts arriving afterwards start from zero.
   */
  async reset(did: string, repository?: string): Promise<ResetResult> {
    const repo = repository ?? null
    // A reset pair is new again, and may have been among the most pulled.
    this.counters.forget(did, repo)
    this.top.forget()
    const pairs = this.database.transaction(() => {
      const found = this.sql.pairs.all(did, repo) as {
        did: string
        repository: string
      }[]
      // The history first: the counter rows hold the pairs' open days.
      this.history?.forget(did, repo)
      this.sql.deleteCounters.run(did, repo)
      this.sql.deleteBaselines.run(did, repo)
      this.refs.forget(did, repo)
      return found
    })
    // A flush reads the table inside the writer's turn, so none can write these records again
    // once the rows are gone; a pair counted again before its delete commits is rewritten.
    const { records, commits } = await this.publisher.unpublish(pairs)
    this.log.info(
      { did, repository, pairs: pairs.length, records },
      'reset stats',
    )
    return { pairs: pairs.length, records, commits }
  }
}
