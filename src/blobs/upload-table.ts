import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'

/** A multipart upload the hold started: who started it, for which blob, where it stands. */
export type UploadRecord = {
  id: string
  /** The DID of the caller who started it: the only one who may use it. */
  caller: string
  /** The digest given when it started (sha256 hex). */
  hex: string
  /** What a completed upload counts a push for, if anything (owner DID and repository). */
  did: string | null
  repo: string | null
  /** The store's own id for it (an S3 UploadId), if the store has one. */
  storeId: string | null
  assembled: boolean
  /** ms since the epoch */
  createdAt: number
}

type Row = Omit<UploadRecord, 'assembled'> & { assembled: number }

const COLUMNS = `id, caller, hex, did, repo, store_id AS storeId, assembled,
  created_at AS createdAt`

const toRecord = (row: Row): UploadRecord => ({
  ...row,
  assembled: row.assembled === 1,
})

/** The `upload` rows, so uploads survive a restart and the sweeper finds the stale ones. */
export class UploadTable {
  private readonly database: Database
  private readonly getStmt: StatementSync
  private readonly insertStmt: StatementSync
  private readonly assembledStmt: StatementSync
  private readonly deleteStmt: StatementSync
  private readonly olderStmt: StatementSync
  private readonly countStmt: StatementSync

  constructor(database: Database) {
    this.database = database
    const { db } = database
    this.getStmt = db.prepare(`SELECT ${COLUMNS} FROM upload WHERE id = ?`)
    this.insertStmt = db.prepare(
      `INSERT INTO upload (id, caller, hex, did, repo, store_id, assembled, created_at)
       VALUES (?, ?, ?, ?, ?, ?, 0, ?)`,
    )
    this.assembledStmt = db.prepare(
      'UPDATE upload SET assembled = 1 WHERE id = ?',
    )
    this.deleteStmt = db.prepare('DELETE FROM upload WHERE id = ?')
    this.olderStmt = db.prepare(
      `SELECT ${COLUMNS} FROM upload WHERE created_at < ? ORDER BY created_at LIMIT ?`,
    )
    this.countStmt = db.prepare('SELECT count(*) AS n FROM upload')
  }

  get(id: string): UploadRecord | undefined {
    const row = this.getStmt.get(id) as Row | undefined
    return row && toRecord(row)
  }

  insert(u: Omit<UploadRecord, 'assembled'>): void {
    this.database.transaction(() =>
      this.insertStmt.run(
        u.id,
        u.caller,
        u.hex,
        u.did,
        u.repo,
        u.storeId,
        u.createdAt,
      ),
    )
  }

  markAssembled(id: string): void {
    this.database.transaction(() => this.assembledStmt.run(id))
  }

  /** Deletes the upload and its part rows. */
  delete(id: string): void {
    this.database.transaction(() => this.deleteStmt.run(id))
  }

  /** Uploads started before `before` (ms), oldest first. */
  olderThan(before: number, limit: number): UploadRecord[] {
    return (this.olderStmt.all(before, limit) as Row[]).map(toRecord)
  }

  count(): number {
    return (this.countStmt.get() as { n: number }).n
  }
}
