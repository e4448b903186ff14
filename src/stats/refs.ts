import { prepareAll, type Database, type Statements } from '../db.ts'
import { iso, latest, type StatsView } from './counter-row.ts'

/** An OCI tag: the distribution spec's grammar. */
export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

/** What a count names below its repository: a tag, or a manifest by digest. */
export type RefKind = 'tag' | 'digest'

/** A tag's or manifest's counts taken since the last persist. */
export type RefPending = {
  did: string
  repository: string
  kind: RefKind
  ref: string
  pulls: number
  pushes: number
  lastPull: number
  lastPush: number
}

type RefRow = {
  ref: string
  pulls: number
  pushes: number
  last_pull: string | null
  last_push: string | null
}

/** A tag's or a manifest's counts, as getStats and listStats answer them. */
export type RefView = StatsView & { tag?: string; manifestDigest?: string }

const SQL = {
  upsert: `
    INSERT INTO stats_ref (did, repository, kind, ref, pulls, pushes, last_pull, last_push)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (did, repository, kind, ref) DO UPDATE SET
      pulls = pulls + excluded.pulls, pushes = pushes + excluded.pushes,
      last_pull = CASE WHEN excluded.last_pull IS NOT NULL AND (last_pull IS NULL OR excluded.last_pull > last_pull)
                  THEN excluded.last_pull ELSE last_pull END,
      last_push = CASE WHEN excluded.last_push IS NOT NULL AND (last_push IS NULL OR excluded.last_push > last_push)
                  THEN excluded.last_push ELSE last_push END`,
  get: `SELECT ref, pulls, pushes, last_pull, last_push FROM stats_ref
        WHERE did = ? AND repository = ? AND kind = ? AND ref = ?`,
  list: `SELECT ref, pulls, pushes, last_pull, last_push FROM stats_ref
         WHERE did = ? AND repository = ? AND kind = 'tag' AND ref > ? ORDER BY ref LIMIT ?`,
  forget:
    'DELETE FROM stats_ref WHERE did = ?1 AND (?2 IS NULL OR repository = ?2)',
}

/**
 * Counts per tag and per manifest digest of a repository, taken from io.atcr.hold.notifyManifest
 * when HOLD_COUNT_SOURCE=manifest: kept in memory beside the pair's own count and written by the
 * counter store's persist, in its transaction (a rolled back persist keeps them pending).
 */
export class RefCounts {
  /** Counted since the journal's last line (see CountJournal). */
  private tick = new Map<string, RefPending>()
  /** Journaled (or put back), not yet in the table. */
  private pending = new Map<string, RefPending>()
  /** What the persist in progress is writing, until it commits. */
  private inFlight: Map<string, RefPending> | undefined
  private readonly sql: Statements<keyof typeof SQL>
  private readonly database: Database

  constructor(database: Database) {
    this.database = database
    this.sql = prepareAll(database.db, SQL)
  }

  /** One pull or push of a tag or manifest; the pair's own count is taken by the caller. */
  count(
    op: 'pull' | 'push',
    did: string,
    repository: string,
    kind: RefKind,
    ref: string,
    now = Date.now(),
  ): void {
    const key = `${did} ${repository} ${kind} ${ref}`
    let p = this.tick.get(key)
    if (!p) {
      p = {
        did,
        repository,
        kind,
        ref,
        pulls: 0,
        pushes: 0,
        lastPull: 0,
        lastPush: 0,
      }
      this.tick.set(key, p)
    }
    if (op === 'pull') {
      p.pulls++
      p.lastPull = now
    } else {
      p.pushes++
      p.lastPush = now
    }
  }

  /**
   * What was counted since the last call, now pending for the table: the journal writes it.
   * Undefined when nothing was.
   */
  takeTick(): RefPending[] | undefined {
    if (this.tick.size === 0) return undefined
    const tick = this.tick
    this.tick = new Map()
    for (const [key, p] of tick) this.addPending(key, { ...p })
    return [...tick.values()]
  }

  /** Counts read back from the journal at start: pending for the table. */
  replay(p: RefPending): void {
    this.addPending(`${p.did} ${p.repository} ${p.kind} ${p.ref}`, p)
  }

  /** Writes what is pending: called inside the persist's transaction. */
  write(): void {
    this.takeTick()
    if (this.pending.size === 0) return
    const batch = this.pending
    this.pending = new Map()
    this.inFlight = batch
    this.database.afterCommit(() => {
      this.inFlight = undefined
    })
    for (const p of batch.values()) {
      this.sql.upsert.run(
        p.did,
        p.repository,
        p.kind,
        p.ref,
        p.pulls,
        p.pushes,
        p.lastPull ? iso(p.lastPull) : null,
        p.lastPush ? iso(p.lastPush) : null,
      )
    }
  }

  /** The persist rolled back: what it was writing is pending again. */
  rolledBack(): void {
    const batch = this.inFlight
    this.inFlight = undefined
    if (!batch) return
    for (const [key, p] of batch) this.addPending(key, p)
  }

  private addPending(key: string, p: RefPending): void {
    const cur = this.pending.get(key)
    if (!cur) this.pending.set(key, p)
    else {
      cur.pulls += p.pulls
      cur.pushes += p.pushes
      cur.lastPull = Math.max(cur.lastPull, p.lastPull)
      cur.lastPush = Math.max(cur.lastPush, p.lastPush)
    }
  }

  /** Drops what is pending of a DID's pairs and deletes their rows: in a reset's transaction. */
  forget(did: string, repository: string | null): void {
    this.forgetPending(did, repository)
    this.sql.forget.run(did, repository)
  }

  /** Drops what is counted and not yet written of a DID's pairs (all, or one repository). */
  forgetPending(did: string, repository: string | null): void {
    for (const map of [this.tick, this.pending]) {
      for (const [key, p] of map) {
        if (
          p.did === did &&
          (repository === null || p.repository === repository)
        ) {
          map.delete(key)
        }
      }
    }
  }

  get(did: string, repository: string, kind: RefKind, ref: string): RefView {
    const row = this.sql.get.get(did, repository, kind, ref) as
      RefRow | undefined
    return toView(did, repository, kind, ref, row)
  }

  /** A repository's tags by name, after `after`. */
  tags(
    did: string,
    repository: string,
    limit: number,
    after: string,
  ): RefView[] {
    const rows = this.sql.list.all(did, repository, after, limit) as RefRow[]
    return rows.map((row) => toView(did, repository, 'tag', row.ref, row))
  }
}

const toView = (
  did: string,
  repository: string,
  kind: RefKind,
  ref: string,
  row: RefRow | undefined,
): RefView => {
  const view: RefView = {
    did,
    repository,
    ...(kind === 'tag' ? { tag: ref } : { manifestDigest: ref }),
    pullCount: row?.pulls ?? 0,
    pushCount: row?.pushes ?? 0,
  }
  const lastPull = latest(row?.last_pull)
  const lastPush = latest(row?.last_push)
  if (lastPull) view.lastPull = lastPull
  if (lastPush) view.lastPush = lastPush
  return view
}
