import { join } from 'node:path'
import type { Cid } from '@atproto/lex-data'
import {
  MemoryBlockstore,
  readCarWithRoot,
  Repo,
  type MST,
} from '@atproto/repo'
import { MessageFrame } from '@atproto/xrpc-server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { ids } from '../src/lexicons.ts'
import { MAX_EVENT_BLOCKS_BYTES } from '../src/repo/events.ts'
import { pathsOf, statsPuts } from './_evented-repo.ts'
import { subscribe } from './_firehose.ts'
import { removeDir, startHold, tempDir, type TestHold } from './_util.ts'

// The hold's events are enough to follow its repo: from getRepo at some rev, every #commit
// after that rev's cursor inverts to its prevData with its own blocks alone, applies on top,
// and the result is the repo getRepo serves now.

type CommitBody = {
  seq: number
  commit: Cid
  rev: string
  since: string | null
  prevData?: Cid
  blocks: Uint8Array
  ops: { action: string; path: string; cid: Cid | null; prev?: Cid }[]
}

const shuffle = <T>(xs: T[]): T[] => {
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

const getRepo = async (h: TestHold) => {
  const res = await fetch(
    `${h.url}/xrpc/com.atproto.sync.getRepo?${new URLSearchParams({ did: h.did })}`,
  )
  expect(res.status).toBe(200)
  return readCarWithRoot(new Uint8Array(await res.arrayBuffer()))
}

describe('the repo rebuilt from its events', () => {
  let h: TestHold

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('inverts every event with its own blocks and ends at the root getRepo serves', async () => {
    const { writer } = h.hold.ctx
    await writer.putRecords(statsPuts(0, 150))
    // A base state and its cursor (nothing else writes meanwhile).
    const cursor = writer.sequencer.current()
    const base = await getRepo(h)
    for (let round = 0; round < 5; round++) {
      await writer.putRecords(statsPuts(round * 37, 180, round + 2))
      await writer.deleteRecords(pathsOf(statsPuts(round * 53, 7)))
      await writer.putRecords(statsPuts(1000 + round * 200, 200))
    }
    // A batch whose event would pass the limit is committed as several commits (each with
    // its event) in one transaction; the limit is lowered so a small repo reaches it.
    writer.maxEventBytes = 60_000
    const large = statsPuts(5000, 200)
    const largePaths = new Set(large.map((p) => `${p.collection}/${p.rkey}`))
    await writer.putRecords(large)
    writer.maxEventBytes = undefined

    const sub = await subscribe(h.url, `?cursor=${cursor}`)
    await sub.untilSeq(writer.sequencer.current())
    sub.ws.close()

    const store = new MemoryBlockstore(base.blocks)
    let repo = await Repo.load(store, base.root)
    let commits = 0
    let split = 0
    for (const frame of sub.frames) {
      expect(frame).toBeInstanceOf(MessageFrame)
      if ((frame as MessageFrame).type !== '#commit') continue
      const evt = frame.body as CommitBody
      commits++
      expect(evt.blocks.byteLength).toBeLessThanOrEqual(MAX_EVENT_BLOCKS_BYTES)
      expect(evt.ops.length).toBeLessThanOrEqual(200)
      if (evt.ops.some((op) => largePaths.has(op.path))) {
        split++
        expect(evt.blocks.byteLength).toBeLessThanOrEqual(60_000)
      }
      expect(evt.since).toBe(repo.commit.rev)
      expect(evt.prevData?.toString()).toBe(repo.commit.data.toString())
      const { root, blocks } = await readCarWithRoot(evt.blocks)
      expect(root.toString()).toBe(evt.commit.toString())
      // Undone from this event's blocks only, in any order.
      const own = await Repo.load(new MemoryBlockstore(blocks), root)
      expect(own.commit.rev).toBe(evt.rev)
      let inverted: MST = own.data
      for (const op of shuffle(evt.ops)) {
        if (op.action === 'create') inverted = await inverted.delete(op.path)
        else if (op.action === 'update') {
          inverted = await inverted.update(op.path, op.prev!)
        } else inverted = await inverted.add(op.path, op.prev!)
      }
      expect((await inverted.getPointer()).toString()).toBe(
        repo.commit.data.toString(),
      )
      await store.putMany(blocks)
      repo = await Repo.load(store, root)
    }
    expect(commits).toBeGreaterThan(15)
    expect(split).toBeGreaterThanOrEqual(2)
    const now = await getRepo(h)
    expect(repo.cid.toString()).toBe(now.root.toString())
    const head = await Repo.load(new MemoryBlockstore(now.blocks), now.root)
    const list = async (r: Repo) =>
      (await r.data.list()).map((l) => [l.key, l.value.toString()])
    expect(await list(repo)).toEqual(await list(head))
  })
})

describe('events a start writes', () => {
  it('announces a repo from before the firehose once: #identity, #account, #sync of its head', async () => {
    const dataDir = await tempDir()
    try {
      let h = await startHold({ dataDir })
      const port = h.port
      await h.stop()
      // A data dir from a release without the firehose: the repo, and no event ever.
      const database = new Database(join(dataDir, 'hold.sqlite'))
      database.db.exec('DELETE FROM firehose_event')
      database.db.exec(
        "DELETE FROM sqlite_sequence WHERE name = 'firehose_event'",
      )
      await database.close()
      h = await startHold({ dataDir, port })
      const { sequencer, storage } = h.hold.ctx.writer
      const events = sequencer.after(0, 100)
      expect(events.map((e) => [e.seq, e.type])).toEqual([
        [1, 'identity'],
        [2, 'account'],
        [3, 'sync'],
      ])
      const sync = MessageFrame.fromBytes(events[2].frame) as MessageFrame
      const body = sync.body as { rev: string; blocks: Uint8Array }
      expect(body.rev).toBe(storage.getRootSync()!.rev)
      const car = await readCarWithRoot(body.blocks)
      expect(car.root.toString()).toBe(storage.getRootSync()!.cid.toString())
      await h.stop()
      // Once: the next start adds nothing.
      h = await startHold({ dataDir, port })
      expect(h.hold.ctx.writer.sequencer.current()).toBe(3)
      await h.stop()
    } finally {
      await removeDir(dataDir)
    }
  })

  it('starts a new repo with #identity, #account, its first #commit and #sync, then the captain', async () => {
    const h = await startHold()
    try {
      const events = h.hold.ctx.writer.sequencer.after(0, 100)
      expect(events.slice(0, 5).map((e) => e.type)).toEqual([
        'identity',
        'account',
        'commit',
        'sync',
        'commit',
      ])
      const captain = MessageFrame.fromBytes(events[4].frame).body as {
        ops: { action: string; path: string }[]
      }
      expect(captain.ops).toContainEqual(
        expect.objectContaining({
          action: 'create',
          path: `${ids.HoldCaptain}/self`,
        }),
      )
    } finally {
      await h.stop()
      await removeDir(h.dataDir)
    }
  })
})
