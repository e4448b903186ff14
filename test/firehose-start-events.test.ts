import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { readCarWithRoot } from '@atproto/repo'
import { MessageFrame } from '@atproto/xrpc-server'
import { afterEach, describe, expect, it } from 'vitest'
import { decodeNode } from '../src/repo/mst-node.ts'
import type { SeqEvent } from '../src/repo/sequencer.ts'
import { statsPuts } from './_evented-repo.ts'
import {
  freePort,
  removeDir,
  startHold,
  tempDir,
  type TestHold,
} from './_util.ts'

// The events a start writes when it replaces the head without ordinary commits: a rebind to a
// new DID and a repaired tree. Consumers cannot follow either op by op, so each ends in #sync
// of the new head, and seq goes on from where it was.

type Body = { did?: string; rev?: string; blocks?: Uint8Array }
const body = (e: SeqEvent) => MessageFrame.fromBytes(e.frame).body as Body

const dirs: string[] = []
const running: TestHold[] = []
afterEach(async () => {
  for (const h of running.splice(0)) await h.stop()
  for (const dir of dirs.splice(0)) await removeDir(dir)
})

const start = async (
  dataDir: string,
  env: Record<string, string> = {},
  port?: number,
) => {
  const h = await startHold({
    dataDir,
    port,
    env: { HOLD_STATS_FLUSH_MS: '3600000', ...env },
  })
  running.push(h)
  return h
}
const stop = async (h: TestHold) => {
  running.splice(running.indexOf(h), 1)
  await h.stop()
}

/** The #sync must name the head the hold now has, and carry its commit block. */
const expectSyncOfHead = async (h: TestHold, e: SeqEvent) => {
  const root = h.hold.ctx.storage.getRootSync()!
  const sync = body(e)
  expect(sync.did).toBe(h.did)
  expect(sync.rev).toBe(root.rev)
  const car = await readCarWithRoot(sync.blocks!)
  expect(car.root.toString()).toBe(root.cid.toString())
  expect(car.blocks.size).toBe(1)
}

describe('events a start writes', () => {
  it('a rebind to a new DID: #identity and #account of the new DID, then #sync of the rebuilt head', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const old = await start(dataDir)
    const oldDid = old.did
    await old.hold.ctx.writer.putRecords(statsPuts(0, 5))
    const last = old.hold.ctx.writer.sequencer.current()
    await stop(old)

    const moved = await start(
      dataDir,
      { HOLD_REBIND_FROM: oldDid },
      await freePort(),
    )
    expect(moved.did).not.toBe(oldDid)
    const events = moved.hold.ctx.writer.sequencer.after(last, 100)
    expect(events[0].seq).toBe(last + 1)
    expect(events.slice(0, 3).map((e) => e.type)).toEqual([
      'identity',
      'account',
      'sync',
    ])
    expect(body(events[0]).did).toBe(moved.did)
    await expectSyncOfHead(moved, events[2])
  })

  it('a repaired tree: #sync of the rebuilt head, then the records written again', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const port = await freePort()
    const h = await start(dataDir, {}, port)
    for (let i = 0; i < 10; i++) {
      await h.hold.ctx.writer.putRecords(statsPuts(i * 60, 60))
    }
    const last = h.hold.ctx.writer.sequencer.current()
    await stop(h)
    // An inner MST node the head reaches goes missing.
    const db = new DatabaseSync(join(dataDir, 'hold.sqlite'))
    const inner = db
      .prepare('SELECT cid, content FROM repo_block')
      .all()
      .find((row) => {
        try {
          const node = decodeNode(row.content as Uint8Array)
          return !!node.l || node.e.some((e) => e.t)
        } catch {
          return false
        }
      })!
    db.prepare('DELETE FROM repo_block WHERE cid = ?').run(inner.cid as string)
    db.close()

    const repaired = await start(dataDir, { HOLD_REPAIR: 'rebuild-tree' }, port)
    const events = repaired.hold.ctx.writer.sequencer.after(last, 1)
    expect(events.map((e) => [e.seq, e.type])).toEqual([[last + 1, 'sync']])
    const sync = body(events[0])
    expect(sync.did).toBe(repaired.did)
    // The start went on to commit (the captain at least) after the repair's head.
    const root = repaired.hold.ctx.storage.getRootSync()!
    expect(sync.rev! <= root.rev).toBe(true)
  })

  it('a new signing key: #identity, then #sync of the re-signed head', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const port = await freePort()
    const key = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32)))
    const h = await start(
      dataDir,
      { HOLD_SIGNING_KEY: key().toString('hex') },
      port,
    )
    const last = h.hold.ctx.writer.sequencer.current()
    await stop(h)
    const rotated = await start(
      dataDir,
      { HOLD_SIGNING_KEY: key().toString('hex') },
      port,
    )
    const events = rotated.hold.ctx.writer.sequencer.after(last, 100)
    expect(events.map((e) => e.type)).toEqual(['identity', 'sync'])
    expect(events[0].seq).toBe(last + 1)
    await expectSyncOfHead(rotated, events[1])
  })
})
