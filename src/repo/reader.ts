import type { LexMap } from '@atproto/lex-data'
import { cborToLexRecord } from '@atproto/repo'
import { parseCid } from '@atproto/lex-data'
import type { RecordIndex } from './record-index.ts'
import type { SqlRepoStorage } from './storage.ts'

export type StoredRecord = { rkey: string; cid: string; value: LexMap }

/** Reads records through the record index, without walking the MST. */
export class RecordReader {
  private readonly storage: SqlRepoStorage

  constructor(storage: SqlRepoStorage) {
    this.storage = storage
  }

  private get records(): RecordIndex {
    return this.storage.records
  }

  get(collection: string, rkey: string): StoredRecord | null {
    const cid = this.records.cid(collection, rkey)
    return cid === undefined ? null : this.load({ rkey, cid })
  }

  list(
    collection: string,
    opts: { limit: number; cursor?: string; reverse?: boolean },
  ): StoredRecord[] {
    return this.records.list(collection, opts).map((row) => this.load(row))
  }

  collections(): string[] {
    return this.records.collections()
  }

  counts(): Record<string, number> {
    return this.records.counts()
  }

  private load(row: { rkey: string; cid: string }): StoredRecord {
    const bytes = this.storage.getBytesSync(parseCid(row.cid))
    if (!bytes) throw new Error(`record block ${row.cid} is missing`)
    return { rkey: row.rkey, cid: row.cid, value: cborToLexRecord(bytes) }
  }
}
