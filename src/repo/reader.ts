import type { LexMap } from '@atproto/lex-data'
import { cborToLexRecord } from '@atproto/repo'
import { parseCid } from '@atproto/lex-data'
import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'
import type { SqlRepoStorage } from './storage.ts'

export type StoredRecord = { rkey: string; cid: string; value: LexMap }

/** Reads records through the record index, without walking the MST. */
export class RecordReader {
  private readonly getStmt: StatementSync
  private readonly listAscStmt: StatementSync
  private readonly listDescStmt: StatementSync
  private readonly collectionsStmt: StatementSync
  private readonly countStmt: StatementSync

  private readonly storage: SqlRepoStorage

  constructor(database: Database, storage: SqlRepoStorage) {
    this.storage = storage
    const { db } = database
    this.getStmt = db.prepare(
      'SELECT rkey, cid FROM record WHERE collection = ? AND rkey = ?',
    )
    this.listAscStmt = db.prepare(
      'SELECT rkey, cid FROM record WHERE collection = ? AND rkey > ? ORDER BY rkey ASC LIMIT ?',
    )
    this.listDescStmt = db.prepare(
      'SELECT rkey, cid FROM record WHERE collection = ? AND rkey < ? ORDER BY rkey DESC LIMIT ?',
    )
    this.collectionsStmt = db.prepare(
      'SELECT DISTINCT collection FROM record ORDER BY collection',
    )
    this.countStmt = db.prepare(
      'SELECT collection, count(*) AS n FROM record GROUP BY collection ORDER BY collection',
    )
  }

  get(collection: string, rkey: string): StoredRecord | null {
    const row = this.getStmt.get(collection, rkey) as
      { rkey: string; cid: string } | undefined
    return row ? this.load(row) : null
  }

  list(
    collection: string,
    opts: { limit: number; cursor?: string; reverse?: boolean },
  ): StoredRecord[] {
    // Like the reference PDS: newest (highest) keys first unless reverse.
    const rows = (
      opts.reverse
        ? this.listAscStmt.all(collection, opts.cursor ?? '', opts.limit)
        : this.listDescStmt.all(
            collection,
            opts.cursor ?? '\u{10ffff}',
            opts.limit,
          )
    ) as { rkey: string; cid: string }[]
    return rows.map((row) => this.load(row))
  }

  collections(): string[] {
    return (this.collectionsStmt.all() as { collection: string }[]).map(
      (r) => r.collection,
    )
  }

  counts(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const row of this.countStmt.all() as {
      collection: string
      n: number
    }[]) {
      out[row.collection] = row.n
    }
    return out
  }

  private load(row: { rkey: string; cid: string }): StoredRecord {
    const bytes = this.storage.getBytesSync(parseCid(row.cid))
    if (!bytes) throw new Error(`record block ${row.cid} is missing`)
    return { rkey: row.rkey, cid: row.cid, value: cborToLexRecord(bytes) }
  }
}
