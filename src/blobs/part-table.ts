import { prepareAll, type Database, type Statements } from '../db.ts'

/** The latest version of one part of a disk upload, and where its bytes are. */
export type PartRow = {
  partNumber: number
  etag: string
  size: number
  /** Where the part sits in the upload's assembly file; null: in a file of its own. */
  offset: number | null
}

const SQL = {
  list: `SELECT part_number AS partNumber, etag, size, assembly_offset AS offset
    FROM upload_part WHERE upload_id = ? ORDER BY part_number`,
  put: `INSERT OR REPLACE INTO upload_part
    (upload_id, part_number, etag, size, assembly_offset) VALUES (?, ?, ?, ?, ?)`,
  move: `UPDATE upload_part SET assembly_offset = ?
    WHERE upload_id = ? AND part_number = ? AND etag = ?`,
  drop: 'DELETE FROM upload_part WHERE upload_id = ? AND part_number = ?',
}

/** The `upload_part` rows of disk uploads: what survives a restart of an assembly's layout. */
export class PartTable {
  private readonly database: Database
  private readonly sql: Statements<keyof typeof SQL>

  constructor(database: Database) {
    this.database = database
    this.sql = prepareAll(database.db, SQL)
  }

  list(uploadId: string): PartRow[] {
    return this.sql.list.all(uploadId) as PartRow[]
  }

  /**
   * Records a new version of a part. Throws when the upload has no row any more (aborted or
   * swept meanwhile): the foreign key refuses it.
   */
  put(uploadId: string, part: PartRow): void {
    this.database.transaction(() =>
      this.sql.put.run(
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
      this.sql.move.run(offset, uploadId, partNumber, etag),
    )
  }

  drop(uploadId: string, partNumber: number): void {
    this.database.transaction(() => this.sql.drop.run(uploadId, partNumber))
  }
}
