import type { DatabaseSync } from 'node:sqlite'
import { prepareAll, returnArrays, type Statements } from '../db.ts'

/** A record as the index knows it: where it is in the repo and the CID of its block. */
export type IndexedRecord = { collection: string; rkey: string; cid: string }

/**
 * The `record` table: which records the repo holds, under which block CID, written at which
 * rev. It lets reads find a record without walking the MST, the writer tell a create from an
 * update, and storage keep a block another record still names. Every statement on the table is
 * here. It reads and writes on the connection it is given (the writer's, or a snapshot
 * reader's); the writer's changes run inside the commit's transaction.
 */
/**
 * Whether a record other than a stats record names this CID. Only records that can share a
 * block are indexed by CID (the migration that made record_shared_cid_idx says why); the term
 * on the collection is what lets the query use that index.
 */
export const SHARED_CID_SQL = `SELECT 1 FROM record WHERE cid = ? AND collection <> 'io.atcr.hold.stats' LIMIT 1`

const SQL = {
  cid: 'SELECT cid FROM record WHERE collection = ? AND rkey = ?',
  cidUsed: SHARED_CID_SQL,
  put: `INSERT INTO record (collection, rkey, cid, repo_rev, indexed_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, repo_rev = excluded.repo_rev, indexed_at = excluded.indexed_at`,
  delete: 'DELETE FROM record WHERE collection = ? AND rkey = ?',
  listAsc:
    'SELECT rkey, cid FROM record WHERE collection = ? AND rkey > ? ORDER BY rkey ASC LIMIT ?',
  listDesc:
    'SELECT rkey, cid FROM record WHERE collection = ? AND rkey < ? ORDER BY rkey DESC LIMIT ?',
  collections: 'SELECT DISTINCT collection FROM record ORDER BY collection',
  counts:
    'SELECT collection, count(*) AS n FROM record GROUP BY collection ORDER BY collection',
  all: 'SELECT collection, rkey, cid FROM record ORDER BY collection, rkey',
  clear: 'DELETE FROM record',
}

export class RecordIndex {
  private readonly sql: Statements<keyof typeof SQL>

  constructor(db: DatabaseSync) {
    this.sql = prepareAll(db, SQL)
    // Pages, and the whole table (a rebuild reads every record).
    returnArrays(this.sql.listAsc, this.sql.listDesc, this.sql.all)
  }

  /** The CID of the record's block, or undefined when the repo has no such record. */
  cid(collection: string, rkey: string): string | undefined {
    const row = this.sql.cid.get(collection, rkey) as
      { cid: string } | undefined
    return row?.cid
  }

  /**
   * Whether any record's block is this one (identical records share one block). Stats records
   * are left out: no two have the same content, so none shares a block with another.
   */
  usesCid(cid: string): boolean {
    return this.sql.cidUsed.get(cid) !== undefined
  }

  put(
    collection: string,
    rkey: string,
    cid: string,
    rev: string,
    indexedAt: string,
  ): void {
    this.sql.put.run(collection, rkey, cid, rev, indexedAt)
  }

  delete(collection: string, rkey: string): void {
    this.sql.delete.run(collection, rkey)
  }

  /** A page of a collection: newest (highest) keys first, as the reference PDS lists, unless reverse. */
  list(
    collection: string,
    opts: { limit: number; cursor?: string; reverse?: boolean },
  ): { rkey: string; cid: string }[] {
    const rows = (opts.reverse
      ? this.sql.listAsc.all(collection, opts.cursor ?? '', opts.limit)
      : this.sql.listDesc.all(
          collection,
          opts.cursor ?? '\u{10ffff}',
          opts.limit,
        )) as unknown as [string, string][]
    return rows.map(([rkey, cid]) => ({ rkey, cid }))
  }

  collections(): string[] {
    return (this.sql.collections.all() as { collection: string }[]).map(
      (r) => r.collection,
    )
  }

  /** Records per collection. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const row of this.sql.counts.all() as {
      collection: string
      n: number
    }[]) {
      out[row.collection] = row.n
    }
    return out
  }

  /** Every record, by collection and key (a rebuild of the whole repo). */
  all(): IndexedRecord[] {
    return (this.sql.all.all() as unknown as [string, string, string][]).map(
      ([collection, rkey, cid]) => ({ collection, rkey, cid }),
    )
  }

  /** Forgets every record (a rebuild of the whole repo, inside its transaction). */
  clear(): void {
    this.sql.clear.run()
  }
}
