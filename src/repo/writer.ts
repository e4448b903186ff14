import { TID } from '@atproto/common'
import type { Keypair } from '@atproto/crypto'
import { decodeCid, type Cid, type LexMap } from '@atproto/lex-data'
import {
  Repo,
  verifyCommitSig,
  WriteOpAction,
  type RecordWriteOp,
} from '@atproto/repo'
import type { Database } from '../db.ts'
import type { Lexicons } from '../lexicons.ts'
import type { Logger } from '../logger.ts'
import { cborCidBytes, cidBytes, cidString } from './cid.ts'
import { encodeDagCbor } from './dag-cbor.ts'
import type { BlockSource } from './mst.ts'
import { NodeCache, readTreeIntoCache } from './node-cache.ts'
import {
  checkTree,
  rebuildTree,
  type RebuildResult,
  type TreeCheck,
} from './repair.ts'
import {
  formatCommit,
  fromLibraryCommit,
  type Commit,
  type PreparedWrite,
  type RepoHead,
} from './commit.ts'
import {
  accountEvent,
  commitEvent,
  CommitTooLargeError,
  identityEvent,
  initCommitEvent,
  syncEvent,
  type RepoEvent,
} from './events.ts'
import { rebuildRepo, type Rebind } from './rebind.ts'
import type { RecordIndex } from './record-index.ts'
import { Sequencer } from './sequencer.ts'
import type { SqlRepoStorage } from './storage.ts'

/** Why a record may not be stored under its key, or undefined (`RepoWriter.keyRule`). */
export type KeyRule = (rkey: string, record: LexMap) => string | undefined

/**
 * MST nodes kept in memory by default: the whole tree of a few hundred thousand records, the
 * upper layers of a larger one (BENCHMARKS.md).
 */
export const DEFAULT_NODE_CACHE_BYTES = 32 * 1024 * 1024

/** Firehose limit: a commit may carry at most this many operations. */
export const MAX_OPS_PER_COMMIT = 200

/** A commit formatted and its event built, not yet stored. */
type PreparedCommit = {
  ops: PreparedWrite[]
  commit: Commit
  head: RepoHead
  nodes: Map<string, Uint8Array>
  /** The MST layer of each of `nodes`. */
  layers: Map<string, number>
  event: RepoEvent
}

export type RecordPut = { collection: string; rkey: string; record: LexMap }

export type CommitEvent = { commit: Commit; ops: RecordWriteOp[] }

/**
 * The one writer of the hold's repo. Two writers on one repo would fork its history, so every
 * write in the process goes through `run()`, a FIFO queue that commits in order, and the head,
 * the SQL storage and the record index move together inside one transaction. Between commits
 * the writer keeps the signed head and the MST nodes as bytes (NodeCache, bounded); a commit
 * reads the nodes it changes from there, else from storage.
 *
 * Every change of the repo writes its firehose events (events.ts) into the sequencer's log in
 * the transaction that makes the change: a #commit per commit; at a repo's creation #identity,
 * #account, its first #commit and #sync; a re-signed head (a new key) #identity and #sync; a
 * rebuilt repo (rebind, repair) #sync; and a repo whose log has no event yet (one from before
 * the firehose) #identity, #account and #sync once, so a relay learns the account.
 */
export class RepoWriter {
  private head: RepoHead
  private tail: Promise<unknown> = Promise.resolve()
  private readonly listeners: ((evt: CommitEvent) => void)[] = []

  private readonly database: Database
  readonly storage: SqlRepoStorage
  /** The record index, which moves with each commit. */
  readonly records: RecordIndex
  /** The log of the repo's firehose events. */
  readonly sequencer: Sequencer
  private readonly keypair: Keypair
  private readonly lexicons: Lexicons
  private readonly log: Logger
  private readonly keyRules = new Map<string, KeyRule>()
  readonly nodes: NodeCache
  private readonly nodeSource: BlockSource
  private warming: Promise<number> | undefined
  /** Lowered by tests only, to see a commit split into smaller ones. */
  maxEventBytes: number | undefined

  private constructor(
    database: Database,
    storage: SqlRepoStorage,
    records: RecordIndex,
    sequencer: Sequencer,
    keypair: Keypair,
    lexicons: Lexicons,
    log: Logger,
    head: RepoHead,
    nodeCacheBytes: number,
  ) {
    this.nodes = new NodeCache(nodeCacheBytes)
    this.nodeSource = {
      getBlockSync: (cid, layer) => {
        const cached = this.nodes.get(cid, layer)
        if (cached) return cached
        const block = storage.getBlockSync(cid)
        if (block) this.nodes.set(cid, block, layer)
        return block
      },
    }
    this.database = database
    this.storage = storage
    this.records = records
    this.sequencer = sequencer
    this.keypair = keypair
    this.lexicons = lexicons
    this.log = log
    this.head = head
  }

  /**
   * Holds every record of `collection` to `rule` (why it may not be stored under its key, or
   * undefined): a collection whose records are each kept under a key made of their content
   * can tell the record index that none shares a block with another.
   */
  keyRule(collection: string, rule: KeyRule): void {
    this.keyRules.set(collection, rule)
  }

  /**
   * Loads the repo, or creates it (an empty signed commit) on first start. A loaded repo's
   * whole tree is checked (every MST node and record block its head reaches must exist, read
   * into the node cache on the way): a damaged one is refused with a RepoDamagedError, or with
   * `repair` rebuilt from the record index (rebuildTree; `repaired` says what was lost).
   */
  static async open(opts: {
    database: Database
    storage: SqlRepoStorage
    records: RecordIndex
    did: string
    keypair: Keypair
    lexicons: Lexicons
    log: Logger
    /** Bytes of MST nodes kept in memory (default 32 MiB; 0 turns the cache off). */
    nodeCacheBytes?: number
    /** HOLD_REBIND_FROM: rebuild the repo of this DID, when the data dir holds it, under `did`. */
    rebind?: Rebind
    /** Rebuild a damaged tree instead of refusing it. */
    repair?: boolean
    /** The hold's handle, for #identity events (left out when not a valid handle). */
    handle?: string
  }): Promise<RepoWriter> {
    const { database, storage, records, did, keypair, lexicons, log, rebind } =
      opts
    const sequencer = new Sequencer(database, log)
    // A log with no event yet: a new repo, or one from before the firehose.
    const introduce = sequencer.current() === 0
    const identity = () => identityEvent(did, opts.handle)
    /** #sync of the head just stored (inside its transaction), after `before`. */
    const announce = (before: RepoEvent[]) => {
      const root = storage.getRootSync()!
      const block = storage.getBlockSync(root.cid.toString())!
      sequencer.append([
        ...before,
        syncEvent(did, { cid: root.cid, rev: root.rev, block }),
      ])
    }
    const make = (head: RepoHead) =>
      new RepoWriter(
        database,
        storage,
        records,
        sequencer,
        keypair,
        lexicons,
        log,
        head,
        opts.nodeCacheBytes ?? DEFAULT_NODE_CACHE_BYTES,
      )
    const cleanStop = storage.takeCleanStop()
    const root = storage.getRootSync()
    if (!root) {
      if (rebind) {
        log.warn(
          { did, rebindFrom: rebind.from },
          'HOLD_REBIND_FROM is set, but the data dir holds no repo yet: nothing to rebuild; unset HOLD_REBIND_FROM',
        )
      }
      const commit = await Repo.formatInitCommit(storage, did, keypair)
      database.transaction(() => {
        storage.applyCommitSync(fromLibraryCommit(commit))
        // As the reference PDS orders a new account's events.
        announce([identity(), accountEvent(did), initCommitEvent(did, commit)])
      })
      const repo = await Repo.load(storage, commit.cid)
      log.info({ did, rev: commit.rev }, 'created repo')
      return make(headOf(repo))
    }
    if (!storage.getBlockSync(root.cid.toString())) {
      const check: TreeCheck = {
        nodes: 0,
        records: 0,
        missingCount: 1,
        missing: [`head commit ${root.cid.toString()}`],
      }
      if (!opts.repair) throw RepoDamagedError.of(check)
      const writer = make({ did, cid: root.cid, rev: root.rev, data: root.cid })
      await writer.repair(
        check,
        introduce ? [identity(), accountEvent(did)] : [],
      )
      return writer
    }
    let repo = await Repo.load(storage, root.cid)
    if (repo.did !== did && rebind?.from === repo.did) {
      await rebuildRepo({
        database,
        storage,
        records,
        old: repo,
        did,
        keypair,
        // A new DID is a new account to consumers: its identity, then the rebuilt head.
        rebind: {
          ...rebind,
          inTxn: () => {
            const marked = rebind.inTxn?.() ?? 0
            announce([identity(), accountEvent(did)])
            return marked
          },
        },
        log,
      })
      repo = await Repo.load(storage, storage.getRootSync()!.cid)
    } else if (repo.did !== did) {
      const named = rebind
        ? `; HOLD_REBIND_FROM names ${rebind.from}, not that DID`
        : ''
      throw new RepoIdentityError(
        `the data dir holds the repo of ${repo.did}, but HOLD_PUBLIC_URL makes this hold ${did}${named}; restore the old HOLD_PUBLIC_URL, or set HOLD_REBIND_FROM=${repo.did} to rebuild the repo under the new DID, or use a new HOLD_DATA_DIR`,
      )
    } else if (rebind) {
      log.warn(
        { did, rebindFrom: rebind.from },
        `HOLD_REBIND_FROM is set, but the repo already belongs to ${did}: nothing to rebuild; unset HOLD_REBIND_FROM`,
      )
    }
    const writer = make(headOf(repo))
    // After a clean stop at this very head, with no block removed or rewritten since, the
    // tree is the one every commit of the last run left whole: the walk is skipped (and the
    // node cache fills in the background, warm()). Anything else walks the whole tree.
    if (cleanStop === repo.cid.toString() && !opts.repair && !rebind) {
      log.info({ did, rev: repo.commit.rev }, 'clean stop: tree check skipped')
    } else {
      const check = await checkTree(
        database,
        repo.commit.data.bytes,
        writer.nodes.maxBytes > 0 ? writer.nodes : undefined,
      )
      if (check.missingCount > 0) {
        if (!opts.repair) throw RepoDamagedError.of(check)
        await writer.repair(
          check,
          introduce ? [identity(), accountEvent(did)] : [],
        )
        return writer
      }
      // The check read the whole tree into the cache: the first warm() has nothing to add.
      if (writer.nodes.maxBytes > 0 && writer.nodes.evictions === 0) {
        writer.readAtOpen = check.nodes
      }
      if (opts.repair) {
        log.warn(
          { nodes: check.nodes, records: check.records },
          'HOLD_REPAIR is set but the repo is whole: nothing to repair; unset HOLD_REPAIR',
        )
      }
    }
    // A new signing key (HOLD_SIGNING_KEY set or changed) would leave the head signed by a key
    // did.json no longer publishes, and the repo unverifiable until the next write.
    if (!(await verifyCommitSig(repo.commit, keypair.did()))) {
      const commit = await repo.formatResignCommit(
        TID.nextStr(repo.commit.rev),
        keypair,
      )
      database.transaction(() => {
        storage.applyCommitSync(fromLibraryCommit(commit))
        announce(
          sequencer.current() === 0
            ? [identity(), accountEvent(did)]
            : [identity()],
        )
      })
      repo = await Repo.load(storage, commit.cid)
      writer.head = headOf(repo)
      log.info({ did, rev: commit.rev }, 're-signed the head with the new key')
    }
    if (introduce && sequencer.current() === 0) {
      database.transaction(() => announce([identity(), accountEvent(did)]))
      log.info({ did }, 'announced the repo to the firehose')
    }
    return writer
  }

  /** What a repair at start dropped, when there was one (the caller rewrites what it can). */
  repaired: RebuildResult | undefined
  /** Nodes the start-up check read into the cache: the whole tree, when set. */
  private readAtOpen: number | undefined

  /** `before`: the events that go before the rebuilt head's #sync. */
  private async repair(check: TreeCheck, before: RepoEvent[]): Promise<void> {
    this.log.warn(
      { missing: check.missingCount, first: check.missing },
      'HOLD_REPAIR=rebuild-tree: rebuilding the damaged repo tree from the record index',
    )
    const result = await rebuildTree({
      database: this.database,
      storage: this.storage,
      records: this.records,
      did: this.head.did,
      rev: this.head.rev,
      keypair: this.keypair,
      // Consumers cannot follow a rebuilt tree op by op: they fetch the new head.
      inTxn: (head) =>
        this.sequencer.append([...before, syncEvent(head.did, head)]),
    })
    this.head = result.head
    this.nodes.clear()
    this.repaired = result
    this.log.warn(
      {
        rev: result.head.rev,
        kept: result.kept,
        lost: result.lost.length,
        removedBlocks: result.removedBlocks,
      },
      'rebuilt the repo tree',
    )
  }

  get did(): string {
    return this.head.did
  }

  onCommit(listener: (evt: CommitEvent) => void): void {
    this.listeners.push(listener)
  }

  /**
   * Runs fn after every write queued before it, and before any queued after it. Each write
   * starts on a turn of the event loop of its own, so a run of commits (a large flush) lets
   * requests in between them: none waits longer than one commit.
   */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(nextTurn).then(fn)
    this.tail = result.catch(() => undefined)
    return result
  }

  /** Waits for every write queued so far. */
  async drain(): Promise<void> {
    await this.run(async () => undefined)
  }

  /**
   * Waits for every write queued so far, then marks the stop as clean at the head, so the
   * next start need not walk the whole tree. Call once nothing else will write.
   */
  async close(): Promise<void> {
    await this.drain()
    const root = this.storage.getRootSync()
    if (!root) return
    try {
      this.storage.markCleanStop(root.cid)
    } catch (err) {
      this.log.warn(
        { err },
        'could not mark the stop as clean: the next start checks the whole tree',
      )
    }
  }

  /**
   * Creates or updates records (unchanged ones are skipped) in one commit, and runs `inTxn` in
   * the same SQLite transaction as the commit. Returns null when there was nothing to commit.
   */
  putRecords(puts: RecordPut[], inTxn?: () => void): Promise<Commit | null> {
    return this.putRecordsFrom(() => puts, inTxn)
  }

  /**
   * Like putRecords, with the records built inside the writer's turn, so a read-modify-write
   * sees every earlier write and no later one.
   */
  putRecordsFrom(
    build: () => RecordPut[],
    inTxn?: () => void,
  ): Promise<Commit | null> {
    return this.run(async () => {
      const ops: PreparedWrite[] = []
      for (const { collection, rkey, record } of build()) {
        // Validated and encoded once: the same bytes name the record in the index and the MST.
        this.lexicons.assertValidRecord(collection, record)
        const problem = this.keyRules.get(collection)?.(rkey, record)
        if (problem) throw new Error(problem)
        const bytes = encodeDagCbor(record)
        const cidBytes = cborCidBytes(bytes)
        const current = this.records.cid(collection, rkey)
        if (current === cidString(cidBytes)) continue
        ops.push({
          action:
            current === undefined ? WriteOpAction.Create : WriteOpAction.Update,
          collection,
          rkey,
          record,
          cid: decodeCid(cidBytes),
          bytes,
          ...(current !== undefined ? { prev: cidOf(current) } : {}),
        } as PreparedWrite)
      }
      return this.commitNow(ops, inTxn)
    })
  }

  deleteRecords(
    paths: { collection: string; rkey: string }[],
    inTxn?: () => void,
  ): Promise<Commit | null> {
    return this.run(async () => {
      const ops: PreparedWrite[] = []
      for (const { collection, rkey } of paths) {
        const current = this.records.cid(collection, rkey)
        if (current === undefined) continue
        ops.push({
          action: WriteOpAction.Delete,
          collection,
          rkey,
          prev: cidOf(current),
        } as PreparedWrite)
      }
      return this.commitNow(ops, inTxn)
    })
  }

  /**
   * Reads the current tree's nodes into the node cache, the top layer first, a slice at a time
   * between other work, until the tree is read or the cache is full; so the first flushes after
   * a start do not read their paths from SQLite one block at a time. Resolves with the nodes
   * read (each layer counted once, from its last pass).
   * A call while a walk is under way waits for that walk (and its options).
   */
  warm(
    opts: { sliceNodes?: number; stopped?: () => boolean } = {},
  ): Promise<number> {
    if (this.nodes.maxBytes <= 0) return Promise.resolve(0)
    if (this.readAtOpen !== undefined) {
      const nodes = this.readAtOpen
      this.readAtOpen = undefined
      return Promise.resolve(nodes)
    }
    this.warming ??= readTreeIntoCache(
      this.nodes,
      this.nodeSource,
      () => this.head.data.bytes,
      opts,
    ).finally(() => {
      this.warming = undefined
    })
    return this.warming
  }

  /**
   * Must run inside the queue. The commit and its #commit event go into one transaction with
   * the record index and `inTxn`. A batch whose event would be over the relays' limits is
   * committed as several smaller commits, each with its event, still in that one transaction.
   * With no ops there is no commit (null), and `inTxn` runs in a transaction of its own.
   */
  private async commitNow(
    ops: PreparedWrite[],
    inTxn?: () => void,
  ): Promise<Commit | null> {
    if (ops.length === 0) {
      if (inTxn) this.database.transaction(inTxn)
      return null
    }
    if (ops.length > MAX_OPS_PER_COMMIT) {
      throw new Error(
        `a commit carries at most ${MAX_OPS_PER_COMMIT} operations, got ${ops.length}`,
      )
    }
    const prepared = await this.prepare(ops, this.head, this.nodeSource)
    const now = new Date()
    const indexedAt = now.toISOString()
    this.database.transaction(() => {
      for (const { ops, commit } of prepared) {
        for (const op of ops) {
          if (op.action === WriteOpAction.Delete) {
            this.records.delete(op.collection, op.rkey)
          } else {
            this.records.put(
              op.collection,
              op.rkey,
              cidString(op.cid.bytes),
              commit.rev,
              indexedAt,
            )
          }
        }
        this.storage.applyCommitSync(commit, previousCids(ops))
      }
      this.sequencer.append(
        prepared.map((p) => p.event),
        now,
      )
      inTxn?.()
    })
    for (const { ops, commit, head, nodes, layers } of prepared) {
      this.head = head
      for (const cid of commit.removed) this.nodes.delete(cid)
      for (const [cid, block] of nodes) {
        this.nodes.set(cid, block, layers.get(cid))
      }
      this.log.debug({ rev: commit.rev, ops: ops.length }, 'committed')
      for (const listener of this.listeners) {
        try {
          listener({ commit, ops })
        } catch (err) {
          this.log.error({ err }, 'commit listener failed')
        }
      }
    }
    return prepared[prepared.length - 1].commit
  }

  /**
   * Formats the commit of `ops` on `head` and its event; when the event is too large, the
   * halves, the second on top of the first (its nodes read from the first's).
   */
  private async prepare(
    ops: PreparedWrite[],
    head: RepoHead,
    source: BlockSource,
  ): Promise<PreparedCommit[]> {
    const formatted = await formatCommit(source, head, ops, this.keypair)
    try {
      const event = commitEvent(
        head.did,
        formatted,
        ops,
        head.data,
        this.maxEventBytes,
      )
      return [{ ops, ...formatted, event }]
    } catch (err) {
      if (!(err instanceof CommitTooLargeError) || ops.length < 2) throw err
    }
    const half = ops.length >> 1
    const first = await this.prepare(ops.slice(0, half), head, source)
    const pending = new Map<string, Uint8Array>()
    for (const p of first) {
      for (const [cid, block] of p.nodes) pending.set(cid, block)
    }
    const overlay: BlockSource = {
      getBlockSync: (cid, layer) =>
        pending.get(cid) ?? source.getBlockSync(cid, layer),
    }
    const rest = await this.prepare(
      ops.slice(half),
      first[first.length - 1].head,
      overlay,
    )
    return [...first, ...rest]
  }
}

export class RepoIdentityError extends Error {}

/** The repo's head reaches blocks that are not stored: refused at start, unless repaired. */
export class RepoDamagedError extends Error {
  static of(check: TreeCheck): RepoDamagedError {
    return new RepoDamagedError(
      `the repo in HOLD_DATA_DIR is damaged: ${check.missingCount} block(s) its head reaches are missing (${check.missing.join(', ')}), as when two processes once wrote one data dir; start once with HOLD_REPAIR=rebuild-tree to rebuild it from the record index and the counter table (README: "Repairing a damaged repo")`,
    )
  }
}

const headOf = (repo: Repo): RepoHead => ({
  did: repo.did,
  cid: repo.cid,
  rev: repo.commit.rev,
  data: repo.commit.data,
})

/** The CIDs the ops' records had before the commit. */
const previousCids = (ops: PreparedWrite[]): Set<string> => {
  const cids = new Set<string>()
  for (const op of ops) {
    if (op.action !== WriteOpAction.Create && op.prev) {
      cids.add(cidString(op.prev.bytes))
    }
  }
  return cids
}

/** A CID object from its string, without the generic multibase parser (cid.ts). */
const cidOf = (cid: string): Cid => decodeCid(cidBytes(cid))

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))
