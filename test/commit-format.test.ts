import { createHash } from 'node:crypto'
import { Secp256k1Keypair } from '@atproto/crypto'
import { decode, encode } from '@atproto/lex-cbor'
import { decodeCid, parseCid, type Cid, type LexMap } from '@atproto/lex-data'
import {
  MemoryBlockstore,
  Repo,
  signCommit,
  verifyCommitSig,
  WriteOpAction,
  type CommitData,
  type RecordWriteOp,
} from '@atproto/repo'
import type { NsidString } from '@atproto/syntax'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { cborCidBytes } from '../src/repo/cid.ts'
import {
  formatCommit,
  type Commit,
  type PreparedWrite,
  type RepoHead,
} from '../src/repo/commit.ts'
import type { RecordPut } from '../src/repo/writer.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { startHold, type TestHold } from './_util.ts'

// The hold's commit (src/repo/commit.ts) against @atproto/repo's Repo.formatCommit for the same
// writes on the same head: the same data root, the same new blocks byte for byte, the same
// removed CIDs, and the same signed commit block once both are made at one rev (the rev is a
// TID of the clock, so two calls never pick the same one; secp256k1 signatures are
// deterministic). Two differences, both of the library's extras: its commit carries
// `relevantBlocks`, the covering proof of every written key, which a firehose event needs (the
// hold has no firehose yet, and its commit has no such blocks); and a block that a commit both
// drops and writes again (two records swapping contents) is in the library's removed CIDs too.

const STATS = ids.HoldStats as NsidString
const CREW = ids.HoldCrew as NsidString
const DID = 'did:web:commit-format.test'

type Collection = typeof STATS | typeof CREW

const rkeyOf = (n: number) =>
  createHash('sha256').update(String(n)).digest('base64url').slice(0, 24)

const didOf = (rkey: string) =>
  `did:plc:${rkey.toLowerCase().replace(/[^a-z2-7]/g, 'a')}`

const recordOf = (collection: Collection, rkey: string, tag: string) =>
  collection === STATS
    ? {
        $type: STATS,
        did: didOf(rkey),
        ownerDid: didOf(rkey),
        repository: `repo-${tag}`,
        pullCount: tag.length,
        pushCount: 0,
        createdAt: '2026-01-02T03:04:05.000Z',
        updatedAt: '2026-01-02T03:04:05.000Z',
      }
    : {
        $type: CREW,
        member: `did:plc:${rkey.toLowerCase().replace(/[^a-z2-7]/g, 'b')}`,
        role: tag,
        permissions: ['blob:read'],
        addedAt: '2026-01-02T03:04:05.000Z',
      }

const prepare = (op: RecordWriteOp): PreparedWrite => {
  if (op.action === WriteOpAction.Delete) return op
  const bytes = encode(op.record)
  return { ...op, cid: decodeCid(cborCidBytes(bytes)), bytes }
}

const headOf = (repo: Repo): RepoHead => ({
  did: repo.did,
  cid: repo.cid,
  rev: repo.commit.rev,
  data: repo.commit.data,
})

const unsigned = (block: Uint8Array) => {
  const { sig: _sig, ...rest } = decode(block) as LexMap
  return rest
}

/** Everything the two commits must share; the proofs are the library's alone. */
const expectSameCommit = async (
  ours: Commit,
  lib: CommitData,
  keypair: Secp256k1Keypair,
) => {
  const libBlocks = new Map<string, Uint8Array>()
  lib.newBlocks.forEach((bytes, cid) => libBlocks.set(cid.toString(), bytes))
  const ourCommit = ours.newBlocks.get(ours.cid.toString())!
  const libCommit = libBlocks.get(lib.cid.toString())!
  const { rev: ourRev, ...ourFields } = unsigned(ourCommit)
  const { rev: libRev, ...libFields } = unsigned(libCommit)
  // did, version, prev and the data root (the MST) are equal.
  expect(ourFields).toEqual(libFields)
  expect(ourRev).toBe(ours.rev)
  expect(libRev).toBe(lib.rev)
  expect(ours.since).toBe(lib.since)
  expect(ours.prev?.toString()).toBe(lib.prev?.toString())

  const withoutCommit = (blocks: Map<string, Uint8Array>, commit: string) =>
    [...blocks.keys()].filter((cid) => cid !== commit).sort()
  expect(withoutCommit(ours.newBlocks, ours.cid.toString())).toEqual(
    withoutCommit(libBlocks, lib.cid.toString()),
  )
  for (const [cid, bytes] of ours.newBlocks) {
    if (cid === ours.cid.toString()) continue
    expect(Buffer.from(bytes).equals(Buffer.from(libBlocks.get(cid)!))).toBe(
      true,
    )
  }
  // When two records swap contents, the library lists their blocks as both new and removed;
  // ours leaves a block that is written again out of `removed` (storage keeps a removed block
  // the same commit adds, so both store the same blocks).
  expect([...ours.removed].filter((cid) => ours.newBlocks.has(cid))).toEqual([])
  expect([...ours.removed].sort()).toEqual(
    lib.removedCids
      .toList()
      .map((cid) => cid.toString())
      .filter((cid) => !libBlocks.has(cid))
      .sort(),
  )

  // Made at one rev, the library's commit block is ours byte for byte.
  const resigned = encode(
    await signCommit(
      {
        ...(libFields as { did: string; data: Cid }),
        version: 3,
        prev: null,
        rev: ours.rev,
      },
      keypair,
    ),
  )
  expect(Buffer.from(resigned).equals(Buffer.from(ourCommit))).toBe(true)
  expect(
    await verifyCommitSig(
      decode(ourCommit) as Parameters<typeof verifyCommitSig>[0],
      keypair.did(),
    ),
  ).toBe(true)
}

/** A small deterministic generator, so a failing seed can be replayed. */
const prng = (seed: number) => {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return (s >>> 0) / 2 ** 32
  }
}

describe('our commit against Repo.formatCommit', () => {
  it('matches on random batches of creates, updates and deletes in two collections', async () => {
    const keypair = await Secp256k1Keypair.create()
    const rand = prng(11)
    const store = new MemoryBlockstore()
    const present = new Map<string, Collection>()
    const initial: RecordWriteOp[] = []
    for (let n = 0; n < 300; n++) {
      const collection = n % 5 === 0 ? CREW : STATS
      const rkey = rkeyOf(n)
      present.set(`${collection}/${rkey}`, collection)
      initial.push({
        action: WriteOpAction.Create,
        collection,
        rkey,
        record: recordOf(collection, rkey, 'init'),
      })
    }
    let repo = await Repo.create(
      store,
      DID,
      keypair,
      initial as Parameters<typeof Repo.create>[3],
    )
    const source = {
      getBlockSync: (cid: string) => store.blocks.get(parseCid(cid)) ?? null,
    }
    let next = 1000
    for (let round = 0; round < 25; round++) {
      const ops = new Map<string, RecordWriteOp>()
      const size = 1 + Math.floor(rand() * 60)
      const keys = [...present.keys()]
      for (let i = 0; i < size; i++) {
        const r = rand()
        if (r < 0.4) {
          const key = keys[Math.floor(rand() * keys.length)]
          const [collection, rkey] = [present.get(key)!, key.split('/')[1]]
          ops.set(key, {
            action: WriteOpAction.Update,
            collection,
            rkey,
            record: recordOf(collection, rkey, `r${round}i${i}`),
          })
        } else if (r < 0.65) {
          const key = keys[Math.floor(rand() * keys.length)]
          const [collection, rkey] = [present.get(key)!, key.split('/')[1]]
          ops.set(key, { action: WriteOpAction.Delete, collection, rkey })
        } else {
          const collection = rand() < 0.2 ? CREW : STATS
          const rkey = rkeyOf(next++)
          ops.set(`${collection}/${rkey}`, {
            action: WriteOpAction.Create,
            collection,
            rkey,
            record: recordOf(collection, rkey, `c${round}`),
          })
        }
      }
      const writes = [...ops.values()]
      const ours = await formatCommit(
        source,
        headOf(repo),
        writes.map(prepare),
        keypair,
      )
      const lib = await repo.formatCommit(writes, keypair)
      await expectSameCommit(ours.commit, lib, keypair)
      repo = await repo.applyCommit(lib)
      for (const [key, op] of ops) {
        if (op.action === WriteOpAction.Delete) present.delete(key)
        else present.set(key, op.collection as Collection)
      }
    }
  })

  it('matches when two records swap contents (a block leaves one key and comes back under another)', async () => {
    const keypair = await Secp256k1Keypair.create()
    const store = new MemoryBlockstore()
    const a = recordOf(STATS, 'aaaa', 'first')
    const b = recordOf(STATS, 'bbbb', 'second')
    const repo = await Repo.create(store, DID, keypair, [
      {
        action: WriteOpAction.Create,
        collection: STATS,
        rkey: 'aaaa',
        record: a,
      },
      {
        action: WriteOpAction.Create,
        collection: STATS,
        rkey: 'bbbb',
        record: b,
      },
    ])
    const writes: RecordWriteOp[] = [
      {
        action: WriteOpAction.Update,
        collection: STATS,
        rkey: 'aaaa',
        record: b,
      },
      {
        action: WriteOpAction.Update,
        collection: STATS,
        rkey: 'bbbb',
        record: a,
      },
    ]
    const ours = await formatCommit(
      { getBlockSync: (cid) => store.blocks.get(parseCid(cid)) ?? null },
      headOf(repo),
      writes.map(prepare),
      keypair,
    )
    await expectSameCommit(
      ours.commit,
      await repo.formatCommit(writes, keypair),
      keypair,
    )
  })
})

describe('the writer’s commits against Repo.formatCommit', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
  })
  afterAll(() => h.stop())

  /** The library's commit of the same writes, from the repo as it is stored now. */
  const libraryCommit = async (writes: RecordWriteOp[]) => {
    const { storage, keypair } = h.hold.ctx
    const repo = await Repo.load(storage, storage.getRootSync()!.cid)
    return repo.formatCommit(writes, keypair)
  }

  // Through the hold's writer, a stats record is kept under its own pair's key.
  const didOfPair = (n: number) => `did:plc:format${String(n).padStart(6, '0')}`
  const keyOf = (n: number) => statsRecordKey(didOfPair(n), 'app')
  const put = (n: number, tag: string): RecordPut => ({
    collection: STATS,
    rkey: keyOf(n),
    record: {
      ...recordOf(STATS, keyOf(n), tag),
      did: didOfPair(n),
      ownerDid: didOfPair(n),
      repository: 'app',
      pullCount: tag === 'one' ? 1 : 2,
    },
  })

  it('are the library’s for the same creates, updates and deletes', async () => {
    const { writer, keypair } = h.hold.ctx
    const batches: { puts?: RecordPut[]; deletes?: number[] }[] = [
      { puts: Array.from({ length: 200 }, (_, n) => put(n, 'one')) },
      { puts: Array.from({ length: 150 }, (_, n) => put(200 + n, 'one')) },
      {
        puts: [
          ...Array.from({ length: 40 }, (_, n) => put(n * 7, 'two')),
          ...Array.from({ length: 10 }, (_, n) => put(1000 + n, 'one')),
        ],
      },
      { deletes: Array.from({ length: 30 }, (_, n) => n * 11) },
    ]
    for (const batch of batches) {
      const writes: RecordWriteOp[] = batch.puts
        ? batch.puts.map((p) => ({
            action:
              writer.records.cid(p.collection, p.rkey) === undefined
                ? WriteOpAction.Create
                : WriteOpAction.Update,
            collection: p.collection as NsidString,
            rkey: p.rkey,
            record: p.record,
          }))
        : batch.deletes!.map((n) => ({
            action: WriteOpAction.Delete,
            collection: STATS,
            rkey: keyOf(n),
          }))
      const lib = await libraryCommit(writes)
      const ours = batch.puts
        ? await writer.putRecords(batch.puts)
        : await writer.deleteRecords(
            writes.map(({ collection, rkey }) => ({ collection, rkey })),
          )
      expect(ours).not.toBeNull()
      await expectSameCommit(ours!, lib, keypair)
    }
  })
})
