import { TID } from '@atproto/common'
import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { parseCid, type LexMap } from '@atproto/lex-data'
import {
  cborToLexRecord,
  MemoryBlockstore,
  Repo,
  WriteOpAction,
  type RecordCreateOp,
} from '@atproto/repo'
import type { NsidString } from '@atproto/syntax'
import type { Database } from '../db.ts'
import { ids } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import { cborCidBytes, cidString } from './cid.ts'
import { fromLibraryCommit } from './commit.ts'
import type { RecordIndex } from './record-index.ts'
import type { SqlRepoStorage } from './storage.ts'

/** HOLD_REBIND_FROM: the DID whose repo in the data dir may be rebuilt under the configured one. */
export type Rebind = {
  from: string
  /** Collections not copied: their owner writes them again from its own tables. */
  skip: string[]
  /**
   * Runs in the rebuild's transaction, so the records it marks for writing again are marked
   * exactly when the old ones are gone. Returns how many (for the log).
   */
  inTxn?: () => number
}

/**
 * Replaces the repo in the data dir (`from`'s) with a new one of `did`, signed by `keypair`: its
 * records, except the collections `rebind.skip` names, copied in the first commit; a captain
 * that named the old DID as owner names the new one. Old blocks, root and index go in the same
 * transaction as the new ones arrive, so a crash leaves one repo or the other.
 */
export const rebuildRepo = async (opts: {
  database: Database
  storage: SqlRepoStorage
  records: RecordIndex
  old: Repo
  did: string
  keypair: Keypair
  rebind: Rebind
  log: Logger
}): Promise<void> => {
  const { database, storage, records, old, did, keypair, rebind, log } = opts
  const { db } = database
  const rows = records.all()
  const writes: (RecordCreateOp & { bytes: Uint8Array })[] = []
  const copied: Record<string, number> = {}
  for (const row of rows) {
    if (rebind.skip.includes(row.collection)) continue
    const block = storage.getBytesSync(parseCid(row.cid))
    if (!block) {
      throw new Error(
        `cannot rebuild the repo: the block of ${row.collection}/${row.rkey} (${row.cid}) is missing`,
      )
    }
    const record: LexMap = cborToLexRecord(block)
    if (row.collection === ids.HoldCaptain && record.owner === old.did) {
      record.owner = did
    }
    writes.push({
      action: WriteOpAction.Create,
      collection: row.collection as NsidString,
      rkey: row.rkey,
      record,
      bytes: encode(record),
    })
    copied[row.collection] = (copied[row.collection] ?? 0) + 1
  }
  // Built apart from the data dir, so every block the new repo needs is in the commit even
  // where the old repo has an identical one (which goes with the old repo).
  const commit = await Repo.formatInitCommit(
    new MemoryBlockstore(),
    did,
    keypair,
    writes,
    TID.nextStr(old.commit.rev),
  )
  const now = new Date().toISOString()
  let marked = 0
  database.transaction(() => {
    records.clear()
    db.exec('DELETE FROM repo_block')
    db.exec('DELETE FROM repo_root')
    for (const w of writes) {
      const cid = cidString(cborCidBytes(w.bytes))
      if (!commit.newBlocks.has(parseCid(cid))) {
        throw new Error(`the rebuilt repo lacks ${w.collection}/${w.rkey}`)
      }
      records.put(w.collection, w.rkey, cid, commit.rev, now)
    }
    storage.applyCommitSync(fromLibraryCommit(commit))
    marked = rebind.inTxn?.() ?? 0
  })
  log.warn(
    { from: old.did, did, rev: commit.rev, copied, rewrite: marked },
    `rebuilt the repo of ${old.did} as ${did} (HOLD_REBIND_FROM): records copied, stats records follow from the counters; unset HOLD_REBIND_FROM`,
  )
}
