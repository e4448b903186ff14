import { TID } from '@atproto/common'
import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { decodeCid, type Cid } from '@atproto/lex-data'
import {
  signCommit,
  WriteOpAction,
  type CommitData,
  type RecordCreateOp,
  type RecordDeleteOp,
  type RecordUpdateOp,
} from '@atproto/repo'
import { cborCidBytes, cidString } from './cid.ts'
import { applyMstOps, type BlockSource, type MstOp } from './mst.ts'

/**
 * A write whose record is already encoded (its CID and DAG-CBOR bytes). `prev` is the record's
 * CID before an update or delete: the firehose event's op carries it (events.ts).
 */
export type PreparedWrite =
  | (RecordCreateOp & { cid: Cid; bytes: Uint8Array })
  | (RecordUpdateOp & { cid: Cid; bytes: Uint8Array; prev?: Cid })
  | (RecordDeleteOp & { prev?: Cid })

/** What the writer keeps of the repo between commits: the signed head. */
export type RepoHead = { did: string; cid: Cid; rev: string; data: Cid }

/** A signed commit ready to store: its blocks and the blocks it leaves behind, by CID string. */
export type Commit = {
  cid: Cid
  rev: string
  since: string | null
  prev: Cid | null
  newBlocks: Map<string, Uint8Array>
  removed: Set<string>
}

export const fromLibraryCommit = (commit: CommitData): Commit => {
  const newBlocks = new Map<string, Uint8Array>()
  commit.newBlocks.forEach((bytes, cid) => newBlocks.set(cid.toString(), bytes))
  return {
    cid: commit.cid,
    rev: commit.rev,
    since: commit.since,
    prev: commit.prev,
    newBlocks,
    removed: new Set(commit.removedCids.toList().map((cid) => cid.toString())),
  }
}

/**
 * A signed commit of `writes` on top of `head`: the same blocks, root and signature as
 * `Repo.formatCommit` (test/commit-format.test.ts), and the unchanged MST nodes of its covering proofs (`relevantBlocks`
 * less `newBlocks`), which the commit's firehose event carries (events.ts). The MST changes are
 * applied as one batch (src/repo/mst.ts) straight from storage, so no tree is kept in memory
 * between commits.
 */
export const formatCommit = async (
  source: BlockSource,
  head: RepoHead,
  writes: PreparedWrite[],
  keypair: Keypair,
): Promise<{
  commit: Commit
  head: RepoHead
  /** The MST nodes the commit adds (also in `commit.newBlocks`). */
  nodes: Map<string, Uint8Array>
  /** Unchanged MST nodes an event needs to invert the writes; not stored again. */
  proof: Map<string, Uint8Array>
  /** The MST layer of each node in `nodes` and `proof`. */
  layers: Map<string, number>
}> => {
  const leaves = new Map<string, Uint8Array>()
  const ops: MstOp[] = writes.map((write) => {
    const key = `${write.collection}/${write.rkey}`
    if (write.action === WriteOpAction.Delete) return { action: 'delete', key }
    leaves.set(cidString(write.cid.bytes), write.bytes)
    return {
      action: write.action === WriteOpAction.Create ? 'create' : 'update',
      key,
      cid: write.cid,
    }
  })
  const mst = applyMstOps(source, head.data, ops, { proofs: true })
  const data = decodeCid(mst.root.bytes)
  const rev = TID.nextStr(head.rev)
  const signed = await signCommit(
    { did: head.did, version: 3, rev, prev: null, data },
    keypair,
  )
  const commitBytes = encode(signed)
  const commitCid = decodeCid(cborCidBytes(commitBytes))
  const newBlocks = new Map(mst.newBlocks)
  for (const [cid, bytes] of leaves) newBlocks.set(cid, bytes)
  newBlocks.set(commitCid.toString(), commitBytes)
  const removed = mst.removed
  removed.add(head.cid.toString())
  // A value both replaced and written again (two records swapping content) stays.
  for (const cid of leaves.keys()) removed.delete(cid)
  return {
    commit: {
      cid: commitCid,
      rev,
      since: head.rev,
      prev: head.cid,
      newBlocks,
      removed,
    },
    head: { did: head.did, cid: commitCid, rev, data },
    nodes: mst.newBlocks,
    proof: mst.proof,
    layers: mst.layers,
  }
}
