import { Secp256k1Keypair } from '@atproto/crypto'
import type { Cid } from '@atproto/lex-data'
import { decode } from '@atproto/lex-cbor'
import {
  MemoryBlockstore,
  readCarWithRoot,
  Repo,
  verifyCommitSig,
  type RecordWriteOp,
  type UnsignedCommit,
} from '@atproto/repo'
import { Frame, MessageFrame } from '@atproto/xrpc-server'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { WriteOpAction } from '@atproto/repo'
import type { PreparedWrite } from '../src/repo/commit.ts'
import {
  commitEvent,
  CommitTooLargeError,
  identityEvent,
  MAX_EVENT_OPS,
  type CommitOp,
} from '../src/repo/events.ts'
import type { SeqEvent } from '../src/repo/sequencer.ts'
import { EventedRepo, pathsOf, statsPuts } from './_evented-repo.ts'
import { removeDir, tempDir } from './_util.ts'

// The sync 1.1 events our commit path makes, held to the reference: a #commit carries the same
// blocks as the reference PDS's event (Repo.formatCommit's newBlocks ∪ relevantBlocks), and from
// those blocks alone a consumer undoes the ops back to prevData, in any order.

const DID = 'did:web:hold.example.com'

type CommitBody = {
  seq: number
  time: string
  repo: string
  commit: Cid
  rev: string
  since: string | null
  blocks: Uint8Array
  ops: CommitOp[]
  prevData?: Cid
  blobs: unknown[]
  rebase: boolean
  tooBig: boolean
}

const decodeFrame = (event: SeqEvent) => {
  const frame = Frame.fromBytes(event.frame)
  if (!(frame instanceof MessageFrame)) throw new Error('not a message frame')
  return { type: frame.type, body: frame.body as Record<string, unknown> }
}

/** Blocks of a CAR by CID string, as base64, without the root's. */
const carBlocks = async (car: Uint8Array) => {
  const { root, blocks } = await readCarWithRoot(car)
  const out = new Map<string, string>()
  blocks.forEach((bytes, cid) =>
    out.set(cid.toString(), Buffer.from(bytes).toString('base64')),
  )
  out.delete(root.toString())
  return out
}

const shuffle = <T>(items: T[]): T[] => {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

/** Undoes a #commit's ops on the tree its own blocks hold; returns the root it reaches. */
const invert = async (body: CommitBody): Promise<string> => {
  const { root, blocks } = await readCarWithRoot(body.blocks)
  let mst = (await Repo.load(new MemoryBlockstore(blocks), root)).data
  for (const op of shuffle(body.ops)) {
    if (op.action === 'create') mst = await mst.delete(op.path)
    else if (op.action === 'update') mst = await mst.update(op.path, op.prev!)
    else mst = await mst.add(op.path, op.prev!)
  }
  return (await mst.getPointer()).toString()
}

describe('sync 1.1 events', () => {
  let dir: string
  let repo: EventedRepo

  beforeEach(async () => {
    dir = await tempDir()
    repo = await EventedRepo.open({
      dir,
      did: DID,
      keypair: await Secp256k1Keypair.create(),
      handle: 'hold.example.com',
    })
  })
  afterEach(async () => {
    await repo.close()
    await removeDir(dir)
  })

  /** What the reference PDS's event would carry for these writes on the repo as it is. */
  const referenceBlocks = async (writes: PreparedWrite[]) => {
    const lib = await Repo.load(repo.storage, repo.head.cid)
    const commit = await lib.formatCommit(
      writes as RecordWriteOp[],
      repo.keypair,
    )
    const out = new Map<string, string>()
    const add = (bytes: Uint8Array, cid: Cid) =>
      out.set(cid.toString(), Buffer.from(bytes).toString('base64'))
    commit.newBlocks.forEach(add)
    commit.relevantBlocks.forEach(add)
    // The commit block differs by its rev and signature.
    out.delete(commit.cid.toString())
    return out
  }

  it('carry the reference PDS’s blocks, and invert to prevData with their own blocks', async () => {
    for (let i = 0; i < 8; i++) await repo.put(statsPuts(i * 200, 200))
    let compared = 0
    for (let round = 0; round < 6; round++) {
      const updates = statsPuts(round * 31, 60, round + 2)
      const creates = statsPuts(5000 + round * 100, 40)
      const deletes = pathsOf(statsPuts(1560 - round * 40, 30))
      for (const prepare of [
        () => repo.writesFor([...updates, ...creates]),
        () => repo.deletesFor(deletes),
      ]) {
        const writes = prepare()
        const before = { ...repo.head }
        const reference = await referenceBlocks(writes)
        const tree = (await Repo.load(repo.storage, before.cid)).data
        const prev = new Map<string, Cid | null>()
        for (const w of writes) {
          const path = `${w.collection}/${w.rkey}`
          prev.set(path, await tree.get(path))
        }
        const [event] = await repo.commit(writes)
        const { type, body } = decodeFrame(event)
        const commit = body as unknown as CommitBody
        expect(type).toBe('#commit')
        expect(await carBlocks(commit.blocks)).toEqual(reference)
        expect(commit).toMatchObject({
          seq: event.seq,
          time: event.time,
          repo: DID,
          rev: repo.head.rev,
          since: before.rev,
          blobs: [],
          rebase: false,
          tooBig: false,
        })
        expect(commit.commit.toString()).toBe(repo.head.cid.toString())
        expect(commit.prevData?.toString()).toBe(before.data.toString())
        // Every op with its record's CID after and before (none before a create).
        expect(commit.ops).toEqual(
          writes.map((w) => {
            const path = `${w.collection}/${w.rkey}`
            const was = prev.get(path)
            return {
              action: w.action,
              path,
              cid: w.action === WriteOpAction.Delete ? null : w.cid,
              ...(was ? { prev: was } : {}),
            }
          }),
        )
        expect(
          commit.ops.every((op) => (op.action === 'create') === !op.prev),
        ).toBe(true)
        expect(await invert(commit)).toBe(before.data.toString())
        compared += commit.ops.length
      }
    }
    expect(compared).toBe(6 * 130)
  })

  it('refuse a commit of more than 200 writes or too many bytes, before anything is stored', async () => {
    await repo.put(statsPuts(0, 50))
    const head = { ...repo.head }
    const seq = repo.sequencer.current()
    const tooMany = repo.writesFor(statsPuts(1000, MAX_EVENT_OPS + 1))
    await expect(repo.commit(tooMany)).rejects.toThrow(CommitTooLargeError)
    // Long keys (a stats key may be 512 characters) make a large event for few writes.
    const long = statsPuts(2000, 100).map((p, i) => ({
      ...p,
      rkey: `${i}-${'x'.repeat(500)}`,
    }))
    repo.maxEventBytes = 60_000
    await expect(repo.put(long)).rejects.toThrow(
      /makes a \d+-byte event, over 60000/,
    )
    expect(repo.head).toEqual(head)
    expect(repo.sequencer.current()).toBe(seq)
    expect(repo.storage.getRootSync()?.rev).toBe(head.rev)
    // Smaller batches, as the writer must split them, each fit.
    for (let i = 0; i < long.length; i += 25) {
      const [event] = await repo.put(long.slice(i, i + 25))
      const body = decodeFrame(event).body as unknown as CommitBody
      expect(body.blocks.byteLength).toBeLessThanOrEqual(60_000)
    }
    // The builder itself refuses, whatever calls it.
    const formatted = {
      commit: {
        cid: head.cid,
        rev: head.rev,
        since: null,
        prev: null,
        newBlocks: new Map(),
        removed: new Set<string>(),
      },
      proof: new Map(),
    }
    expect(() => commitEvent(DID, formatted, tooMany, head.data)).toThrow(
      CommitTooLargeError,
    )
  })

  it('tell of a new repo as identity, account, its first commit and sync, in that order', async () => {
    const events = repo.sequencer.after(0, 10).map(decodeFrame)
    expect(events.map((e) => e.type)).toEqual([
      '#identity',
      '#account',
      '#commit',
      '#sync',
    ])
    const [identity, account, first, sync] = events.map((e) => e.body)
    expect(events.map((e) => e.body.seq)).toEqual([1, 2, 3, 4])
    expect(new Set(events.map((e) => e.body.time)).size).toBe(1)
    expect(identity).toMatchObject({ did: DID, handle: 'hold.example.com' })
    expect(account).toMatchObject({ did: DID, active: true })
    const commit = first as unknown as CommitBody
    expect(commit).toMatchObject({ repo: DID, since: null, ops: [] })
    expect('prevData' in commit).toBe(false)
    const car = await readCarWithRoot(commit.blocks)
    expect(car.root.toString()).toBe(commit.commit.toString())
    expect(car.blocks.size).toBe(2)
    // #sync: the same commit, its block alone.
    const synced = await readCarWithRoot(sync.blocks as Uint8Array)
    expect(synced.root.toString()).toBe(commit.commit.toString())
    expect(synced.blocks.size).toBe(1)
    expect(sync).toMatchObject({ did: DID, rev: commit.rev })
  })

  it('leave a host that is not a valid handle (localhost) out of #identity', () => {
    expect(identityEvent('did:web:localhost%3A8080', 'localhost').body).toEqual(
      { did: 'did:web:localhost%3A8080' },
    )
    expect(identityEvent(DID).body).toEqual({ did: DID })
  })

  it('tell of a new signing key as identity then sync, and the next commit follows it', async () => {
    await repo.put(statsPuts(0, 5))
    const before = { ...repo.head }
    const seq = repo.sequencer.current()
    await repo.close()
    const key = await Secp256k1Keypair.create()
    repo = await EventedRepo.open({ dir, did: DID, keypair: key })
    const events = repo.sequencer.after(seq, 10).map(decodeFrame)
    expect(events.map((e) => e.type)).toEqual(['#identity', '#sync'])
    const sync = events[1].body
    expect(sync.rev).toBe(repo.head.rev)
    const { root, blocks } = await readCarWithRoot(sync.blocks as Uint8Array)
    expect(blocks.size).toBe(1)
    expect(root.toString()).toBe(repo.head.cid.toString())
    const resigned = decode(blocks.get(root)!) as unknown as UnsignedCommit & {
      sig: Uint8Array
    }
    expect(await verifyCommitSig(resigned, key.did())).toBe(true)
    expect(repo.head.data.toString()).toBe(before.data.toString())
    const [next] = await repo.put(statsPuts(5, 1))
    const body = decodeFrame(next).body as unknown as CommitBody
    expect(body.since).toBe(sync.rev)
    expect(body.prevData?.toString()).toBe(before.data.toString())
  })
})
