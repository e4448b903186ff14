import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'
import { COUNTER_SELECT, keyOf, type CounterRow } from './counter-row.ts'

/** How many of the most pulled pairs are kept in memory (top() up to this many is free). */
export const TOP_KEPT = 100

/** The most pulled pairs, own and imported counts added: a sort of the whole table. */
const TOP_SQL = `${COUNTER_SELECT}
  ORDER BY c.pull_count + c.baseline_pull DESC, c.push_count + c.baseline_push DESC,
           c.did, c.repository
  LIMIT ?`

/** A pair's place among the most pulled: own and imported counts added. */
type Ranked = {
  key: string
  did: string
  repository: string
  pulls: number
  pushes: number
}

/** Negative when a ranks before b: more pulls, then more pushes, then by DID and repository. */
const rank = (a: Ranked, b: Ranked): number =>
  b.pulls - a.pulls ||
  b.pushes - a.pushes ||
  (a.did < b.did ? -1 : a.did > b.did ? 1 : 0) ||
  (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0)

type KeptSet = {
  byKey: Map<string, Ranked>
  /** The set's last pair, or undefined when it must be looked for again. */
  last: Ranked | undefined
}

/**
 * The TOP_KEPT most pulled pairs (the status page's), read once from the whole table and then
 * kept up to date by the counter store, which reports every pair it writes (`saw`): counts only
 * grow there, so a pair outside the set can only enter it by passing the set's last. Imports
 * and resets can lower counts: they drop the set (`forget`), and the next read builds it again.
 */
export class TopPairs {
  private kept: KeptSet | undefined
  /** How many times the set was read from the whole table (tests). */
  reads = 0
  private readonly topStmt: StatementSync
  private readonly getStmt: StatementSync

  constructor(database: Database) {
    this.topStmt = database.db.prepare(TOP_SQL)
    this.getStmt = database.db.prepare(
      `${COUNTER_SELECT} WHERE c.did = ? AND c.repository = ?`,
    )
  }

  /** Whether the set is kept now, so the counts written must be reported to it. */
  get keeping(): boolean {
    return this.kept !== undefined
  }

  /**
   * The rows of the `limit` most pulled pairs: from the kept set up to TOP_KEPT (read from the
   * table first when it is not kept), a sort of the table past that.
   */
  rows(limit: number): CounterRow[] {
    if (limit > TOP_KEPT) return this.topStmt.all(limit) as CounterRow[]
    this.kept ??= this.read()
    return [...this.kept.byKey.values()]
      .sort(rank)
      .slice(0, limit)
      .map((p) => this.getStmt.get(p.did, p.repository) as CounterRow)
  }

  /** Drops the set: counts went down, or a write the set followed was rolled back. */
  forget(): void {
    this.kept = undefined
  }

  /** A pair's counts as the counter store has just written them. */
  saw(
    did: string,
    repository: string,
    counts: { pulls: number; pushes: number },
  ): void {
    const top = this.kept
    if (!top) return
    const key = keyOf(did, repository)
    const kept = top.byKey.get(key)
    if (kept) {
      kept.pulls = counts.pulls
      kept.pushes = counts.pushes
      // Counts only grow here: the last pair may have moved up, nobody else down.
      if (kept === top.last) top.last = undefined
      return
    }
    const pair: Ranked = { key, did, repository, ...counts }
    if (top.byKey.size < TOP_KEPT) {
      // A set not yet full holds every pair there is (and has not looked for its last).
      top.byKey.set(key, pair)
      return
    }
    top.last ??= [...top.byKey.values()].reduce((a, b) =>
      rank(a, b) > 0 ? a : b,
    )
    if (rank(pair, top.last) >= 0) return
    top.byKey.delete(top.last.key)
    top.byKey.set(key, pair)
    top.last = undefined
  }

  private read(): KeptSet {
    this.reads++
    const byKey = new Map<string, Ranked>()
    for (const row of this.topStmt.all(TOP_KEPT) as (CounterRow & {
      baseline_pull: number
      baseline_push: number
    })[]) {
      const key = keyOf(row.did, row.repository)
      byKey.set(key, {
        key,
        did: row.did,
        repository: row.repository,
        pulls: row.pull_count + row.baseline_pull,
        pushes: row.push_count + row.baseline_push,
      })
    }
    return { byKey, last: undefined }
  }
}
