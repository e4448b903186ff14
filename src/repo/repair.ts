import { TID } from '@atproto/common'
import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { decodeCid, parseCid, type Cid } from '@atproto/lex-data'
import { signCommit } from '@atproto/repo'
import type { StatementSync } from 'node:sqlite'
import { Worker } from 'node:worker_threads'
import { returnArrays, type Database } from '../db.ts'
import { cborCidBytes, cidString } from './cid.ts'
import type { RepoHead } from './commit.ts'
import { applyMstOps, layerOfKey, type BlockSource, type MstOp } from './mst.ts'
import { decodeNode, encodeFlat, type NodeData } from './mst-node.ts'
import type { NodeCache } from './node-cache.ts'
import type { RecordIndex } from './record-index.ts'
import type { SqlRepoStorage } from './storage.ts'

/** Blocks a repo's head reaches that storage does not have. */
export type TreeCheck = {
  nodes: number
  records: number
  /** How many blocks are missing, and the first few of them. */
  missingCount: number
  missing: string[]
}

const MISSING_NAMED = 3
/** Nodes read per query in the level-by-level walk. */
const NODES_PER_QUERY = 1000
/** Record CIDs handed to the checking thread at a time. */
const VALUES_PER_BATCH = 10_000

/**
 * Walks the whole tree under `root` (the commit's `data`), a level at a time: every MST node
 * must exist (read in batches, and kept in `cache` when given, so the writer starts with the
 * tree in memory) and so must every record block, which a worker thread with its own
 * connection checks meanwhile, a batch of CIDs at a time. It runs at start, before the hold
 * listens or writes.
 */
export const checkTree = async (
  database: Database,
  root: Uint8Array,
  cache?: NodeCache,
): Promise<TreeCheck> => {
  const check: TreeCheck = {
    nodes: 0,
    records: 0,
    missingCount: 0,
    missing: [],
  }
  const miss = (what: string, cid: string) => {
    check.missingCount++
    if (check.missing.length < MISSING_NAMED) {
      check.missing.push(`${what} ${cid}`)
    }
  }
  const records = new Worker(RECORD_CHECK_WORKER, {
    eval: true,
    workerData: { path: database.path },
  })
  const missingRecords = new Promise<string[]>((resolve, reject) => {
    records.once('message', resolve)
    records.once('error', reject)
  })
  const readNodes = database.db.prepare(
    'SELECT cid, content FROM repo_block WHERE cid IN (SELECT value FROM json_each(?))',
  )
  returnArrays(readNodes)
  let values: string[] = []
  // The layer of the level being read: the root's is its first key's (a level down, one less),
  // so a cache too small for the tree keeps its upper layers (NodeCache).
  let layer = 0
  const visit = (cid: string, block: Uint8Array, next: string[]) => {
    let node: NodeData
    try {
      node = decodeNode(block)
    } catch {
      miss('unreadable MST node', cid)
      return
    }
    if (check.nodes === 0 && node.e.length > 0) {
      layer = layerOfKey(Buffer.from(node.e[0].k).toString('latin1'))
    }
    check.nodes++
    if (node.l) next.push(cidString(node.l))
    for (const entry of node.e) {
      if (entry.t) next.push(cidString(entry.t))
      values.push(cidString(entry.v))
    }
    if (values.length >= VALUES_PER_BATCH) {
      check.records += values.length
      records.postMessage(values)
      values = []
    }
  }
  try {
    let level = [cidString(root)]
    while (level.length > 0) {
      const next: string[] = []
      const unread: string[] = []
      for (const cid of level) {
        const cached = cache?.get(cid, layer)
        if (cached) visit(cid, cached, next)
        else unread.push(cid)
      }
      for (let i = 0; i < unread.length; i += NODES_PER_QUERY) {
        const wanted = unread.slice(i, i + NODES_PER_QUERY)
        const found = new Set<string>()
        for (const row of readNodes.iterate(JSON.stringify(wanted))) {
          const [cid, content] = row as unknown as [string, Uint8Array]
          found.add(cid)
          visit(cid, content, next)
          cache?.set(cid, content, layer)
        }
        for (const cid of wanted) if (!found.has(cid)) miss('MST node', cid)
      }
      level = next
      layer = Math.max(0, layer - 1)
    }
    check.records += values.length
    records.postMessage(values)
    records.postMessage(null)
    for (const cid of await missingRecords) miss('record', cid)
    return check
  } finally {
    await records.terminate()
  }
}

/**
 * Checks that record blocks exist, a batch at a time as they come (null: done, answer with the
 * missing ones). A batch is looked up in CID order, the table's, so nearby keys share pages.
 */
const RECORD_CHECK_WORKER = `
const { DatabaseSync } = require('node:sqlite')
const { parentPort, workerData } = require('node:worker_threads')
const db = new DatabaseSync(workerData.path, { readOnly: true })
const where = 'FROM json_each(?) j WHERE NOT EXISTS (SELECT 1 FROM repo_block b WHERE b.cid = j.value)'
const count = db.prepare('SELECT count(*) AS n ' + where)
const list = db.prepare('SELECT j.value AS cid ' + where)
const missing = []
parentPort.on('message', (batch) => {
  if (batch === null) {
    db.close()
    parentPort.postMessage(missing)
    return
  }
  const json = JSON.stringify(batch.sort())
  if (count.get(json).n === 0) return
  for (const row of list.all(json)) missing.push(row.cid)
})
`

export type RebuildResult = {
  head: RepoHead
  /** Records kept (their blocks were there). */
  kept: number
  /** Records of the index whose blocks were gone: dropped from the repo. */
  lost: { collection: string; rkey: string }[]
  /** Blocks no longer reachable, deleted. */
  removedBlocks: number
}

const EMPTY_NODE = encodeFlat({ keys: [], values: [], trees: [null] })
const EMPTY_CID = cborCidBytes(EMPTY_NODE)

/**
 * A new tree made of the records in the record index whose blocks still exist, committed on
 * top of `rev` and signed with `keypair`; blocks the new head does not reach are deleted and
 * records whose blocks are gone leave the index, all in one transaction. For a repo whose tree
 * lost blocks (two processes once wrote one data dir): what the index still has is kept, and
 * the caller rewrites what it can re-create (stats records from the counter table).
 */
export const rebuildTree = async (opts: {
  database: Database
  storage: SqlRepoStorage
  records: RecordIndex
  did: string
  rev: string
  keypair: Keypair
  /** Runs last in the rebuild's transaction, with the new head and its commit block. */
  inTxn?: (head: {
    did: string
    cid: Cid
    rev: string
    block: Uint8Array
  }) => void
}): Promise<RebuildResult> => {
  const { database, storage, records, did, keypair } = opts
  const { db } = database
  const hasBlockStmt: StatementSync = db.prepare(
    'SELECT 1 FROM repo_block WHERE cid = ?',
  )
  const ops: MstOp[] = []
  const lost: { collection: string; rkey: string }[] = []
  const keep = new Set<string>()
  for (const r of records.all()) {
    if (hasBlockStmt.get(r.cid)) {
      ops.push({
        action: 'create',
        key: `${r.collection}/${r.rkey}`,
        cid: parseCid(r.cid),
      })
      keep.add(r.cid)
    } else {
      lost.push({ collection: r.collection, rkey: r.rkey })
    }
  }
  const empty: BlockSource = {
    getBlockSync: (cid) => (cid === cidString(EMPTY_CID) ? EMPTY_NODE : null),
  }
  const mst = applyMstOps(empty, decodeCid(EMPTY_CID), ops)
  const data = decodeCid(mst.root.bytes)
  const rev = TID.nextStr(opts.rev)
  const signed = await signCommit(
    { did, version: 3, rev, prev: null, data },
    keypair,
  )
  const commitBytes = encode(signed)
  const commitCid = cborCidBytes(commitBytes)
  const nodes = new Map(mst.newBlocks)
  // With no records at all the root is the empty node, which the walk does not count as new.
  if (mst.root.cid === cidString(EMPTY_CID)) nodes.set(mst.root.cid, EMPTY_NODE)
  let removedBlocks = 0
  database.transaction(() => {
    for (const r of lost) records.delete(r.collection, r.rkey)
    for (const [cid, bytes] of nodes) storage.putBlockSync(cid, bytes, rev)
    storage.putBlockSync(cidString(commitCid), commitBytes, rev)
    storage.updateRootSync(decodeCid(commitCid), rev)
    db.exec(
      'CREATE TEMP TABLE IF NOT EXISTS repair_keep (cid TEXT PRIMARY KEY)',
    )
    db.exec('DELETE FROM repair_keep')
    const keepStmt = db.prepare(
      'INSERT OR IGNORE INTO repair_keep (cid) VALUES (?)',
    )
    for (const cid of keep) keepStmt.run(cid)
    for (const cid of nodes.keys()) keepStmt.run(cid)
    keepStmt.run(cidString(commitCid))
    removedBlocks = Number(
      db
        .prepare(
          'DELETE FROM repo_block WHERE cid NOT IN (SELECT cid FROM repair_keep)',
        )
        .run().changes,
    )
    db.exec('DROP TABLE repair_keep')
    opts.inTxn?.({ did, cid: decodeCid(commitCid), rev, block: commitBytes })
  })
  return {
    head: { did, cid: decodeCid(commitCid), rev, data },
    kept: ops.length,
    lost,
    removedBlocks,
  }
}
