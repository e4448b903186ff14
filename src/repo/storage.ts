import { BlockMap, ReadableBlockstore, type CommitData } from '@atproto/repo'
import type { RepoStorage } from '@atproto/repo'
import { parseCid, type Cid } from '@atproto/lex-data'
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { prepareAll, type Database, type Statements } from '../db.ts'
import { fromLibraryCommit, type Commit } from './commit.ts'
import { RecordIndex } from './record-index.ts'

export type RepoRoot = { cid: Cid; rev: string }

const BLOCK_SQL = 'SELECT content FROM repo_block WHERE cid = ?'

const SQL = {
  getBlock: BLOCK_SQL,
  // A block a new commit adds again (a record identical to an older one) takes the newer rev,
  // so `getRepo?since=` still sends it to a consumer that must see it as a new leaf.
  putBlock: `INSERT INTO repo_block (cid, repo_rev, size, content) VALUES (?, ?, ?, ?)
             ON CONFLICT (cid) DO UPDATE SET repo_rev = excluded.repo_rev WHERE excluded.repo_rev > repo_block.repo_rev`,
  deleteBlock: 'DELETE FROM repo_block WHERE cid = ?',
  getRoot: 'SELECT cid, rev FROM repo_root WHERE id = 1',
  putRoot: `INSERT INTO repo_root (id, cid, rev, indexed_at) VALUES (1, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET cid = excluded.cid, rev = excluded.rev, indexed_at = excluded.indexed_at`,
  cleanStop: 'SELECT root FROM repo_clean_stop WHERE id = 1',
  unmarkStop: 'DELETE FROM repo_clean_stop',
  markStop: `INSERT INTO repo_clean_stop (id, root, stopped_at) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET root = excluded.root, stopped_at = excluded.stopped_at`,
}

/** A blockstore read with synchronous SQLite lookups: the library's async reads use them too. */
abstract class SqlBlockstore extends ReadableBlockstore {
  abstract getBytesSync(cid: Cid): Uint8Array | null

  async getBytes(cid: Cid): Promise<Uint8Array | null> {
    return this.getBytesSync(cid)
  }

  async has(cid: Cid): Promise<boolean> {
    return this.getBytesSync(cid) !== null
  }

  async getBlocks(cids: Cid[]): Promise<{ blocks: BlockMap; missing: Cid[] }> {
    const blocks = new BlockMap()
    const missing: Cid[] = []
    for (const cid of cids) {
      const bytes = this.getBytesSync(cid)
      if (bytes) blocks.set(cid, bytes)
      else missing.push(cid)
    }
    return { blocks, missing }
  }
}

/**
 * `@atproto/repo` storage on SQLite: blocks tagged with the rev that added them (so
 * `getRepo?since=` can select newer blocks) and the root. Only the RepoWriter calls the
 * mutating methods, always inside its transaction.
 */
export class SqlRepoStorage extends SqlBlockstore implements RepoStorage {
  private readonly sql: Statements<keyof typeof SQL>
  readonly database: Database
  /** The record index this storage consults before it deletes a block. */
  readonly records: RecordIndex

  constructor(database: Database, records: RecordIndex) {
    super()
    this.database = database
    this.records = records
    this.sql = prepareAll(database.db, SQL)
  }

  getRootSync(): RepoRoot | null {
    const row = this.sql.getRoot.get() as
      { cid: string; rev: string } | undefined
    return row ? { cid: parseCid(row.cid), rev: row.rev } : null
  }

  async getRoot(): Promise<Cid | null> {
    return this.getRootSync()?.cid ?? null
  }

  getBytesSync(cid: Cid): Uint8Array | null {
    return this.getBlockSync(cid.toString())
  }

  /** A block by its CID string. */
  getBlockSync(cid: string): Uint8Array | null {
    const row = this.sql.getBlock.get(cid) as
      { content: Uint8Array } | undefined
    return row ? row.content : null
  }

  putBlockSync(cid: Cid | string, block: Uint8Array, rev: string): void {
    this.sql.putBlock.run(cid.toString(), rev, block.byteLength, block)
  }

  async putBlock(cid: Cid, block: Uint8Array, rev: string): Promise<void> {
    this.database.transaction(() => this.putBlockSync(cid, block, rev))
  }

  async putMany(blocks: BlockMap, rev: string): Promise<void> {
    this.database.transaction(() =>
      blocks.forEach((bytes, cid) => this.putBlockSync(cid, bytes, rev)),
    )
  }

  /**
   * The head a clean stop left, taken (the mark is removed, so a crash from now on leaves none):
   * undefined after a crash, a first start, or a block removed or rewritten since that stop.
   */
  takeCleanStop(): string | undefined {
    return this.database.transaction(() => {
      const row = this.sql.cleanStop.get() as { root: string } | undefined
      if (row) this.sql.unmarkStop.run()
      return row?.root
    })
  }

  /** Marks a clean stop at `root`: every write before it is in, and none follows. */
  markCleanStop(root: Cid): void {
    this.database.transaction(() =>
      this.sql.markStop.run(root.toString(), new Date().toISOString()),
    )
  }

  updateRootSync(cid: Cid, rev: string): void {
    this.sql.putRoot.run(cid.toString(), rev, new Date().toISOString())
  }

  async updateRoot(cid: Cid, rev: string): Promise<void> {
    this.database.transaction(() => this.updateRootSync(cid, rev))
  }

  /**
   * Writes a commit's blocks and root. Call after the record index reflects the commit, so a
   * removed block that an identical record still uses is kept. `recordCids`, when the caller
   * knows them, are the removed blocks that were records (the ops' previous CIDs): only those
   * can be shared with another record, so only those are looked up in the record index; the
   * rest are tree nodes, which no record's bytes can equal (a record has a `$type`).
   */
  applyCommitSync(commit: Commit, recordCids?: ReadonlySet<string>): void {
    for (const [cid, bytes] of commit.newBlocks) {
      this.putBlockSync(cid, bytes, commit.rev)
    }
    for (const cid of commit.removed) {
      if (commit.newBlocks.has(cid)) continue
      // A removed record block stays while another record with identical content names it.
      const mayBeShared = recordCids === undefined || recordCids.has(cid)
      if (mayBeShared && this.records.usesCid(cid)) continue
      this.sql.deleteBlock.run(cid)
    }
    this.updateRootSync(commit.cid, commit.rev)
  }

  async applyCommit(commit: CommitData): Promise<void> {
    this.database.transaction(() =>
      this.applyCommitSync(fromLibraryCommit(commit)),
    )
  }
}

type SnapshotStmts = {
  block: StatementSync
  root: StatementSync
  records: RecordIndex
}

const snapshotStmts = new WeakMap<DatabaseSync, SnapshotStmts>()

/**
 * The repo read through a reader connection inside its read transaction
 * (`Database.readSnapshot`): one snapshot, however many awaits the library's readers take and
 * whatever the writer commits meanwhile.
 */
export class SnapshotBlocks extends SqlBlockstore {
  private readonly stmts: SnapshotStmts

  constructor(reader: DatabaseSync) {
    super()
    let stmts = snapshotStmts.get(reader)
    if (!stmts) {
      stmts = {
        block: reader.prepare(BLOCK_SQL),
        root: reader.prepare('SELECT cid FROM repo_root WHERE id = 1'),
        records: new RecordIndex(reader),
      }
      snapshotStmts.set(reader, stmts)
    }
    this.stmts = stmts
  }

  /** The head commit's CID. */
  rootSync(): Cid | null {
    const row = this.stmts.root.get() as { cid: string } | undefined
    return row ? parseCid(row.cid) : null
  }

  /** The CID of a record in the index, or null. */
  recordCidSync(collection: string, rkey: string): string | null {
    return this.stmts.records.cid(collection, rkey) ?? null
  }

  getBytesSync(cid: Cid): Uint8Array | null {
    const row = this.stmts.block.get(cid.toString()) as
      { content: Uint8Array } | undefined
    return row ? row.content : null
  }
}
