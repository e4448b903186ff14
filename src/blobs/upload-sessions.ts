import type { Database } from '../db.ts'
import { UploadTable, type UploadRecord } from './upload-table.ts'

/**
 * One completion or abort of an upload at a time: whoever holds an upload may end it. `end`
 * deletes the upload and says whether this holder did, so of two calls that assembled the same
 * upload exactly one counts it; `release` lets go without deleting.
 */
export type UploadHold = {
  end(): Promise<boolean>
  release(): Promise<void>
}

/**
 * Where the upload service keeps its uploads: who started each, for which blob, the store's id
 * for it. A single hold keeps them in its SQLite `upload` table (LocalUploadSessions); the
 * machines of a cluster share them through Redis, so any machine can take any call of an upload.
 */
export interface UploadSessions {
  /** Uploads started and not yet completed, aborted or swept. */
  count(): Promise<number>
  get(id: string): Promise<UploadRecord | undefined>
  insert(u: Omit<UploadRecord, 'assembled'>): Promise<void>
  markAssembled(id: string): Promise<void>
  /** Holds the upload for one completion or abort, or undefined: another call holds it. */
  hold(id: string): Promise<UploadHold | undefined>
  /** Uploads started before `before` (ms) that the sweep should abort, oldest first. */
  olderThan(before: number, limit: number): Promise<UploadRecord[]>
  /** Whether the store's leftovers of `id` belong to an upload still open or being ended. */
  isKnown(id: string): Promise<boolean>
}

/** The uploads of a single hold: rows of its `upload` table, held in this process's memory. */
export class LocalUploadSessions implements UploadSessions {
  private readonly table: UploadTable
  private readonly busy = new Set<string>()

  constructor(database: Database) {
    this.table = new UploadTable(database)
  }

  async count(): Promise<number> {
    return this.table.count()
  }

  async get(id: string): Promise<UploadRecord | undefined> {
    return this.table.get(id)
  }

  async insert(u: Omit<UploadRecord, 'assembled'>): Promise<void> {
    this.table.insert(u)
  }

  async markAssembled(id: string): Promise<void> {
    this.table.markAssembled(id)
  }

  async hold(id: string): Promise<UploadHold | undefined> {
    if (this.busy.has(id)) return undefined
    this.busy.add(id)
    return {
      end: async () => {
        this.table.delete(id)
        this.busy.delete(id)
        return true
      },
      release: async () => {
        this.busy.delete(id)
      },
    }
  }

  async olderThan(before: number, limit: number): Promise<UploadRecord[]> {
    return this.table.olderThan(before, limit)
  }

  async isKnown(id: string): Promise<boolean> {
    return this.table.get(id) !== undefined
  }
}
