import type { Cid, LexMap } from '@atproto/lex-data'
import { WriteOpAction, type CommitData } from '@atproto/repo'
import { isValidHandle } from '@atproto/syntax'
import { MessageFrame } from '@atproto/xrpc-server'
import { carBytes } from './car.ts'
import { cidBytes } from './cid.ts'
import { encodeDagCborSequence } from './dag-cbor.ts'
import type { Commit, PreparedWrite } from './commit.ts'

/**
 * The events of `com.atproto.sync.subscribeRepos` (sync 1.1), built from a commit and its
 * writes, and their frames. Pure: nothing here reads or writes storage. The sequencer gives each
 * event its seq and time and stores the frame (sequencer.ts).
 */

/** Relays refuse a #commit with more operations than this (the lexicon's maxLength). */
export const MAX_EVENT_OPS = 200

/** Relays refuse a #commit whose `blocks` CAR is larger than this (the lexicon's maxLength). */
export const MAX_EVENT_BLOCKS_BYTES = 2_000_000

/**
 * A commit's event would be over MAX_EVENT_OPS or MAX_EVENT_BLOCKS_BYTES: the writer must
 * commit the writes in smaller batches instead (each its own commit and event).
 */
export class CommitTooLargeError extends Error {}

export type CommitOp = {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: Cid | null
  /** The record's CID before an update or delete; absent for a create. */
  prev?: Cid
}

export type CommitBody = {
  repo: string
  commit: Cid
  rev: string
  since: string | null
  /** A CAR rooted at the commit: the commit, its new blocks and the proof nodes. */
  blocks: Uint8Array
  ops: CommitOp[]
  /** The tree's root before the commit; absent for a repo's first commit. */
  prevData?: Cid
  blobs: Cid[]
  rebase: false
  tooBig: false
}

/** A repo event as written to the log, without the seq and time the sequencer adds. */
export type RepoEvent =
  | { type: 'commit'; body: CommitBody }
  | { type: 'sync'; body: { did: string; rev: string; blocks: Uint8Array } }
  | { type: 'identity'; body: { did: string; handle?: string } }
  | { type: 'account'; body: { did: string; active: boolean } }

export type EventType = RepoEvent['type']

/**
 * The #commit of `writes`, as formatted by formatCommit on top of a tree whose root was
 * `prevData`. Its blocks are what the reference PDS sends (`newBlocks ∪ relevantBlocks` of
 * `Repo.formatCommit`), plus every record written, also one whose block the repo already had.
 * Updates and deletes must carry `prev`. Throws CommitTooLargeError past the relays' limits
 * (`maxBytes` is lowered only by tests).
 */
export const commitEvent = (
  did: string,
  formatted: { commit: Commit; proof: Map<string, Uint8Array> },
  writes: PreparedWrite[],
  prevData: Cid,
  maxBytes = MAX_EVENT_BLOCKS_BYTES,
): RepoEvent => {
  const { commit, proof } = formatted
  if (writes.length > MAX_EVENT_OPS) {
    throw new CommitTooLargeError(
      `a commit event carries at most ${MAX_EVENT_OPS} operations, got ${writes.length}`,
    )
  }
  const root = commit.cid.toString()
  const commitBlock = commit.newBlocks.get(root)
  if (!commitBlock) throw new Error(`commit ${root} lacks its own block`)
  const blocks = carBytes(
    commit.cid,
    eventBlocks(root, commitBlock, commit.newBlocks, proof),
  )
  if (blocks.byteLength > maxBytes) {
    throw new CommitTooLargeError(
      `a commit of ${writes.length} writes makes a ${blocks.byteLength}-byte event, over ${maxBytes}`,
    )
  }
  return commitOf(did, commit, {
    since: commit.since,
    blocks,
    ops: writes.map(commitOp),
    prevData,
  })
}

/** The commit block first (a CAR reader finds the root at once), then the rest. */
function* eventBlocks(
  root: string,
  commitBlock: Uint8Array,
  newBlocks: Map<string, Uint8Array>,
  proof: Map<string, Uint8Array>,
): Generator<readonly [Uint8Array, Uint8Array]> {
  yield [cidBytes(root), commitBlock]
  for (const [cid, bytes] of newBlocks) {
    if (cid !== root) yield [cidBytes(cid), bytes]
  }
  for (const [cid, bytes] of proof) yield [cidBytes(cid), bytes]
}

const commitOp = (write: PreparedWrite): CommitOp => {
  const path = `${write.collection}/${write.rkey}`
  if (write.action === WriteOpAction.Create) {
    return { action: 'create', path, cid: write.cid }
  }
  // Without prev a relay cannot invert the op, and refuses the event.
  if (!write.prev) throw new Error(`${write.action} of ${path} has no prev`)
  if (write.action === WriteOpAction.Update) {
    return { action: 'update', path, cid: write.cid, prev: write.prev }
  }
  return { action: 'delete', path, cid: null, prev: write.prev }
}

/** The #commit of a new repo (`Repo.formatInitCommit`): no ops, no since, no prevData. */
export const initCommitEvent = (did: string, commit: CommitData): RepoEvent => {
  const commitBlock = commit.newBlocks.get(commit.cid)
  if (!commitBlock) throw new Error(`commit ${commit.cid} lacks its own block`)
  const rest: [Uint8Array, Uint8Array][] = []
  commit.newBlocks.forEach((bytes, cid) => {
    if (!cid.equals(commit.cid)) rest.push([cid.bytes, bytes])
  })
  return commitOf(did, commit, {
    since: null,
    blocks: carBytes(commit.cid, [[commit.cid.bytes, commitBlock], ...rest]),
    ops: [],
  })
}

/** A #commit as the hold sends every one: no blobs listed, never a rebase, never too big. */
const commitOf = (
  did: string,
  commit: { cid: Cid; rev: string },
  rest: Pick<CommitBody, 'since' | 'blocks' | 'ops' | 'prevData'>,
): RepoEvent => ({
  type: 'commit',
  body: {
    repo: did,
    commit: commit.cid,
    rev: commit.rev,
    ...rest,
    blobs: [],
    rebase: false,
    tooBig: false,
  },
})

/**
 * #sync: the repo's head is now this commit (a re-signed head, a repo consumers must fetch
 * again). Its blocks are the commit block alone.
 */
export const syncEvent = (
  did: string,
  commit: { cid: Cid; rev: string; block: Uint8Array },
): RepoEvent => ({
  type: 'sync',
  body: {
    did,
    rev: commit.rev,
    blocks: carBytes(commit.cid, [[commit.cid.bytes, commit.block]]),
  },
})

/**
 * #identity: consumers should resolve the DID again (a new signing key). The handle goes in
 * only when it is a valid handle: a hold on `localhost` has none, and consumers that validate
 * the event would refuse `localhost`.
 */
export const identityEvent = (did: string, handle?: string): RepoEvent => ({
  type: 'identity',
  body:
    handle !== undefined && isValidHandle(handle) ? { did, handle } : { did },
})

/** #account: the hold's repo is active (it is never deactivated or taken down). */
export const accountEvent = (did: string): RepoEvent => ({
  type: 'account',
  body: { did, active: true },
})

/** The complete WebSocket message of a sequenced event: DAG-CBOR header, then body. */
export const eventFrame = (
  event: RepoEvent,
  seq: number,
  time: string,
): Uint8Array => {
  const frame = new MessageFrame({ ...event.body, seq, time } as LexMap, {
    type: `#${event.type}`,
  })
  // MessageFrame.toBytes, through the faster encoder (the same bytes), with no copy per part.
  return encodeDagCborSequence([frame.header, frame.body])
}
