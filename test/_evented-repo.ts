import { ids } from '../src/ids.ts'
import { join } from 'node:path'
import type { StatementSync } from 'node:sqlite'
import { TID } from '@atproto/common'
import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { decodeCid, parseCid, type Cid, type LexMap } from '@atproto/lex-data'
import { Repo, verifyCommitSig, WriteOpAction } from '@atproto/repo'
import { Database } from '../src/db.ts'
import { cborCidBytes, cidString } from '../src/repo/cid.ts'
import {
  formatCommit,
  fromLibraryCommit,
  type PreparedWrite,
  type RepoHead,
} from '../src/repo/commit.ts'
import {
  accountEvent,
  commitEvent,
  identityEvent,
  initCommitEvent,
  syncEvent,
} from '../src/repo/events.ts'
import { Sequencer, type SeqEvent } from '../src/repo/sequencer.ts'
import { RecordIndex } from '../src/repo/record-index.ts'
import { SqlRepoStorage } from '../src/repo/storage.ts'

export type Put = { collection: string; rkey: string; record: LexMap }

/**
 * A repo committed the way the hold's writer commits with the firehose wired in: formatCommit
 * (proofs included) and the commit's event before the transaction, then the record index, the
 * blocks and the event in one transaction. Also a new repo's and a key change's events.
 */
export class EventedRepo {
  readonly database: Database
  readonly storage: SqlRepoStorage
  readonly sequencer: Sequencer
  readonly did: string
  keypair: Keypair
  head: RepoHead
  /** Lowered by tests to see oversized commits refused. */
  maxEventBytes: number | undefined
  private readonly getCid: StatementSync
  private readonly upsert: StatementSync
  private readonly remove: StatementSync

  private constructor(
    database: Database,
    sequencer: Sequencer,
    did: string,
    keypair: Keypair,
    head: RepoHead,
  ) {
    this.database = database
    this.storage = new SqlRepoStorage(database, new RecordIndex(database.db))
    this.sequencer = sequencer
    this.did = did
    this.keypair = keypair
    this.head = head
    const { db } = database
    this.getCid = db.prepare(
      'SELECT cid FROM record WHERE collection = ? AND rkey = ?',
    )
    this.upsert = db.prepare(
      `INSERT INTO record (collection, rkey, cid, repo_rev, indexed_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, repo_rev = excluded.repo_rev`,
    )
    this.remove = db.prepare(
      'DELETE FROM record WHERE collection = ? AND rkey = ?',
    )
  }

  /**
   * Opens the repo in `dir`, or creates it with the events of a new account (identity,
   * account, the first commit, sync) in the transaction that creates it. Opened under another
   * key, the head is re-signed with #identity then #sync.
   */
  static async open(opts: {
    dir: string
    did: string
    keypair: Keypair
    handle?: string
  }): Promise<EventedRepo> {
    const { did, keypair } = opts
    const database = new Database(join(opts.dir, 'hold.sqlite'))
    const storage = new SqlRepoStorage(database, new RecordIndex(database.db))
    const sequencer = new Sequencer(database)
    const root = storage.getRootSync()
    if (!root) {
      const commit = await Repo.formatInitCommit(storage, did, keypair)
      database.transaction(() => {
        storage.applyCommitSync(fromLibraryCommit(commit))
        sequencer.append([
          identityEvent(did, opts.handle),
          accountEvent(did),
          initCommitEvent(did, commit),
          syncEvent(did, {
            cid: commit.cid,
            rev: commit.rev,
            block: commit.newBlocks.get(commit.cid)!,
          }),
        ])
      })
    }
    const repo = await Repo.load(storage, storage.getRootSync()!.cid)
    const evented = new EventedRepo(database, sequencer, did, keypair, {
      did,
      cid: repo.cid,
      rev: repo.commit.rev,
      data: repo.commit.data,
    })
    if (!(await verifyCommitSig(repo.commit, keypair.did()))) {
      await evented.resign(opts.handle)
    }
    return evented
  }

  /** Re-signs the head with the current key: #identity, then #sync. */
  async resign(handle?: string): Promise<SeqEvent[]> {
    const repo = await Repo.load(this.storage, this.head.cid)
    const commit = await repo.formatResignCommit(
      TID.nextStr(this.head.rev),
      this.keypair,
    )
    const events = this.database.transaction(() => {
      this.storage.applyCommitSync(fromLibraryCommit(commit))
      return this.sequencer.append([
        identityEvent(this.did, handle),
        syncEvent(this.did, {
          cid: commit.cid,
          rev: commit.rev,
          block: commit.newBlocks.get(commit.cid)!,
        }),
      ])
    })
    this.head = { ...this.head, cid: commit.cid, rev: commit.rev }
    return events
  }

  /** Creates or updates records (unchanged ones skipped) in one commit. */
  put(puts: Put[]): Promise<SeqEvent[]> {
    return this.commit(this.writesFor(puts))
  }

  delete(paths: { collection: string; rkey: string }[]): Promise<SeqEvent[]> {
    return this.commit(this.deletesFor(paths))
  }

  /** The writes that put the records, as the writer prepares them (`prev` from the index). */
  writesFor(puts: Put[]): PreparedWrite[] {
    const writes: PreparedWrite[] = []
    for (const { collection, rkey, record } of puts) {
      const bytes = encode(record)
      const cid = decodeCid(cborCidBytes(bytes))
      const prev = this.currentCid(collection, rkey)
      if (prev?.equals(cid)) continue
      const action = prev ? WriteOpAction.Update : WriteOpAction.Create
      writes.push({
        action,
        collection,
        rkey,
        record,
        cid,
        bytes,
        prev,
      } as PreparedWrite)
    }
    return writes
  }

  deletesFor(paths: { collection: string; rkey: string }[]): PreparedWrite[] {
    const writes: PreparedWrite[] = []
    for (const { collection, rkey } of paths) {
      const prev = this.currentCid(collection, rkey)
      if (!prev) continue
      writes.push({
        action: WriteOpAction.Delete,
        collection,
        rkey,
        prev,
      } as PreparedWrite)
    }
    return writes
  }

  async commit(writes: PreparedWrite[]): Promise<SeqEvent[]> {
    if (writes.length === 0) return []
    const formatted = await formatCommit(
      this.storage,
      this.head,
      writes,
      this.keypair,
    )
    const event = commitEvent(
      this.did,
      formatted,
      writes,
      this.head.data,
      this.maxEventBytes,
    )
    const { commit } = formatted
    const now = new Date().toISOString()
    const events = this.database.transaction(() => {
      for (const write of writes) {
        if (write.action === WriteOpAction.Delete) {
          this.remove.run(write.collection, write.rkey)
        } else {
          this.upsert.run(
            write.collection,
            write.rkey,
            cidString(write.cid.bytes),
            commit.rev,
            now,
          )
        }
      }
      this.storage.applyCommitSync(commit)
      return this.sequencer.append([event])
    })
    this.head = formatted.head
    return events
  }

  currentCid(collection: string, rkey: string): Cid | undefined {
    const row = this.getCid.get(collection, rkey) as { cid: string } | undefined
    return row ? parseCid(row.cid) : undefined
  }

  async close(): Promise<void> {
    await this.sequencer.stop()
    await this.database.close()
  }
}

const CREATED_AT = '2026-01-02T03:04:05.000Z'

/** `n` io.atcr.hold.stats records from pair number `from`, with pull count `version`. */
export const statsPuts = (from: number, n: number, version = 1): Put[] =>
  Array.from({ length: n }, (_, i) => {
    const did = `did:plc:user${String(from + i).padStart(8, '0')}`
    const repository = `image-${from + i}`
    return {
      collection: ids.HoldStats,
      rkey: Buffer.from(`${did}:${repository}`).toString('base64url'),
      record: {
        $type: 'io.atcr.hold.stats',
        did,
        ownerDid: did,
        repository,
        pullCount: version,
        pushCount: 1,
        createdAt: CREATED_AT,
        updatedAt: CREATED_AT,
      },
    }
  })

export const pathsOf = (puts: Put[]) =>
  puts.map(({ collection, rkey }) => ({ collection, rkey }))
