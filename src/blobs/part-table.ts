import type { StatementSync } from 'node:sqlite'
import type { Database } from '../db.ts'

/** The latest version of one part of a disk upload, and where its bytes are. */
export type PartRow = {
  partNumber: number
  etag: string
  size: number
  /** Where the part sits in the upload's assembly file; null: in a file of its own. */
  offset: number | null
}

/** The `upload_part` rows of disk uploads: what survives a restart of an assembly's layout. */
export class PartTable {
  private readonly database: Database
  private readonly listStmt: StatementSync
  private readonly putStmt: StatementSync
  private readonly moveStmt: StatementSync
  private readonly dropStmt: StatementSync

  constructor(database: Database) {
    this.database = database
    const { db } = database
    this.listStmt = db.prepare(
      `SELECT part_number AS partNumber, etag, size, assembly_offset AS offset
       FROM upload_part WHERE upload_id = ? ORDER BY part_number`,
    )
    this.putStmt = db.prepare(
      `INSERT OR REPLACE INTO upload_part
       (upload_id, part_number, etag, size, assembly_offset) VALUES (?, ?, ?, ?, ?)`,
    )
    this.moveStmt = db.prepare(
      `UPDATE upload_part SET assembly_offset = ?
       WHERE upload_id = ? AND part_number = ? AND etag = ?`,
    )
    this.dropStmt = db.prepare(
      'DELETE FROM upload_part WHERE upload_id = ? AND part_number = ?',
    )
  }

  list(uploadId: string): PartRow[] {
    return this.listStmt.all(uploadId) as PartRow[]
  }

  /**
   * Records a new version of a part. Throws when the upload has no row any more (aborted or
   * swept meanwhile): the foreign key refuses it.
   */
  put(uploadId: string, part: PartRow): void {
    this.database.transaction(() =>
      this.putStmt.run(
        uploadId,
        part.partNumber,
        part.etag,
        part.size,
        part.offset,
      ),
    )
  }

  /** Records that a version of a part moved into the assembly (or out of it). */
  move(
    uploadId: string,
    partNumber: number,
    etag: string,
    offset: number | null,
  ): void {
    this.database.transaction(() =>
      this.moveStmt.run(offset, uploadId, partNumber, etag),
    )
  }

  drop(uploadId: string, partNumber: number): void {
    this.database.transaction(() => this.dropStmt.run(uploadId, partNumber))
  }
}
