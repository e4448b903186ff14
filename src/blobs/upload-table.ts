import { prepareAll, type Database, type Statements } from '../db.ts'

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

const SQL = {
  get: `SELECT ${COLUMNS} FROM upload WHERE id = ?`,
  insert: `INSERT INTO upload (id, caller, hex, did, repo, store_id, assembled, created_at)
    VALUES (?, ?, ?, ?, ?, ?, 0, ?)`,
  assembled: 'UPDATE upload SET assembled = 1 WHERE id = ?',
  delete: 'DELETE FROM upload WHERE id = ?',
  older: `SELECT ${COLUMNS} FROM upload WHERE created_at < ? ORDER BY created_at LIMIT ?`,
  count: 'SELECT count(*) AS n FROM upload',
}

/** The `upload` rows, so uploads survive a restart and the sweeper finds the stale ones. */
export class UploadTable {
  private readonly database: Database
  private readonly sql: Statements<keyof typeof SQL>

  constructor(database: Database) {
    this.database = database
    this.sql = prepareAll(database.db, SQL)
  }

  get(id: string): UploadRecord | undefined {
    const row = this.sql.get.get(id) as Row | undefined
    return row && toRecord(row)
  }

  insert(u: Omit<UploadRecord, 'assembled'>): void {
    this.database.transaction(() =>
      this.sql.insert.run(
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
    this.database.transaction(() => this.sql.assembled.run(id))
  }

  /** Deletes the upload and its part rows. */
  delete(id: string): void {
    this.database.transaction(() => this.sql.delete.run(id))
  }

  /** Uploads started before `before` (ms), oldest first. */
  olderThan(before: number, limit: number): UploadRecord[] {
    return (this.sql.older.all(before, limit) as Row[]).map(toRecord)
  }

  count(): number {
    return (this.sql.count.get() as { n: number }).n
  }
}
