import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { Frame, MessageFrame } from '@atproto/xrpc-server'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Database } from '../src/db.ts'
import { accountEvent, identityEvent } from '../src/repo/events.ts'
import { Sequencer, type SeqEvent } from '../src/repo/sequencer.ts'
import { removeDir, ROOT, sleep, tempDir, waitFor } from './_util.ts'

// The durable event log: seqs that only grow (restarts and pruning included), events told to
// listeners only after their transaction commits, and pruning that keeps a suffix of the log.

const DID = 'did:web:hold.example.com'

const bodyOf = (event: SeqEvent) => {
  const frame = Frame.fromBytes(event.frame)
  if (!(frame instanceof MessageFrame)) throw new Error('not a message frame')
  return { type: frame.type, body: frame.body as Record<string, unknown> }
}

describe('the sequencer', () => {
  let dir: string
  let database: Database
  let sequencer: Sequencer

  beforeEach(async () => {
    dir = await tempDir()
    database = new Database(join(dir, 'hold.sqlite'))
    sequencer = new Sequencer(database)
  })
  afterEach(async () => {
    await sequencer.stop()
    await database.close()
    await removeDir(dir)
  })

  const append = (n: number, at = new Date()) =>
    database.transaction(() =>
      sequencer.append(
        Array.from({ length: n }, () => identityEvent(DID)),
        at,
      ),
    )

  it('refuses to append outside a transaction', () => {
    expect(() => sequencer.append([accountEvent(DID)])).toThrow(
      /inside transaction/,
    )
    expect(sequencer.current()).toBe(0)
  })

  it('numbers events from 1 in order, with the seq and time inside each frame', () => {
    const at = new Date('2026-03-04T05:06:07.000Z')
    const events = database.transaction(() =>
      sequencer.append([identityEvent(DID), accountEvent(DID)], at),
    )
    expect(events.map((e) => [e.seq, e.type])).toEqual([
      [1, 'identity'],
      [2, 'account'],
    ])
    expect(events.map(bodyOf)).toEqual([
      { type: '#identity', body: { did: DID, seq: 1, time: at.toISOString() } },
      {
        type: '#account',
        body: { did: DID, active: true, seq: 2, time: at.toISOString() },
      },
    ])
    // What is read back is what was written, byte for byte.
    const stored = sequencer.after(0, 10)
    expect(stored.map((e) => Buffer.from(e.frame))).toEqual(
      events.map((e) => Buffer.from(e.frame)),
    )
    expect(sequencer.after(1, 10).map((e) => e.seq)).toEqual([2])
    expect(sequencer.after(0, 1).map((e) => e.seq)).toEqual([1])
  })

  it('tells listeners after COMMIT, and nothing of a transaction that rolled back', () => {
    const told: number[][] = []
    sequencer.onEvents((events) => told.push(events.map((e) => e.seq)))
    database.transaction(() => {
      sequencer.append([identityEvent(DID)])
      expect(told).toEqual([])
      sequencer.append([accountEvent(DID)])
    })
    expect(told).toEqual([[1], [2]])
    expect(() =>
      database.transaction(() => {
        sequencer.append([identityEvent(DID)])
        throw new Error('the commit failed')
      }),
    ).toThrow('the commit failed')
    expect(told).toEqual([[1], [2]])
    expect(sequencer.current()).toBe(2)
    expect(sequencer.after(0, 10).map((e) => e.seq)).toEqual([1, 2])
    // A listener that throws does not undo the commit, nor stop the others.
    sequencer.onEvents(() => {
      throw new Error('listener bug')
    })
    expect(append(1).map((e) => e.seq)).toEqual([3])
    expect(told.at(-1)).toEqual([3])
    expect(sequencer.written).toMatchObject({ identity: 2, account: 1 })
  })

  it('never gives a seq twice: across a reopen, and after pruning emptied the log', async () => {
    append(3)
    await database.close()
    database = new Database(join(dir, 'hold.sqlite'))
    sequencer = new Sequencer(database)
    expect(sequencer.current()).toBe(3)
    expect(append(1)[0].seq).toBe(4)
    expect(await sequencer.prune(new Date(Date.now() + 60_000))).toBe(4)
    expect(sequencer.oldest()).toBeNull()
    expect(sequencer.current()).toBe(4)
    await database.close()
    database = new Database(join(dir, 'hold.sqlite'))
    sequencer = new Sequencer(database)
    expect(sequencer.current()).toBe(4)
    expect(append(1)[0].seq).toBe(5)
  })

  it('prunes the old events in batches and keeps every event from the first recent one on', async () => {
    const old = new Date(Date.now() - 3 * 3_600_000)
    const recent = new Date()
    for (let i = 0; i < 12; i++) append(100, old)
    append(5, recent)
    // A clock set back: an old-looking event after a recent one stays, so no hole opens.
    append(1, old)
    append(2, recent)
    const cutoff = new Date(Date.now() - 3_600_000)
    expect(await sequencer.prune(cutoff)).toBe(1200)
    expect(sequencer.oldest()).toBe(1201)
    expect(sequencer.after(0, 1000).map((e) => e.seq)).toEqual(
      Array.from({ length: 8 }, (_, i) => 1201 + i),
    )
    expect(await sequencer.prune(cutoff)).toBe(0)
  })

  it('prunes in the background by the retention, without blocking other work', async () => {
    const old = new Date(Date.now() - 5 * 3_600_000)
    for (let i = 0; i < 6; i++) append(500, old)
    append(3)
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    sequencer.startPruning(2, 60_000)
    await waitFor(() => sequencer.oldest() === 3001)
    clearInterval(timer)
    expect(sequencer.pruned).toBe(3000)
    // 500 events a batch, a turn of the event loop between batches.
    expect(ticks).toBeGreaterThan(0)
    expect(sequencer.current()).toBe(3003)
  })
})

describe('events and commits under kill -9', () => {
  it('keeps exactly one event per commit, chained, with seqs that go on after a restart', async () => {
    const dir = await tempDir()
    try {
      let last = 0
      for (let round = 0; round < 4; round++) {
        const child = spawn(
          process.execPath,
          [join(ROOT, 'test/_commit-loop.ts'), dir],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        )
        let out = ''
        child.stdout.on('data', (chunk: Buffer) => (out += chunk))
        // Killed at a random moment after it has committed a few times.
        await waitFor(() => out.split('\n').length > 3 + round, 30_000)
        await sleep(Math.random() * 200)
        child.kill('SIGKILL')
        await new Promise((resolve) => child.once('exit', resolve))
        const { seqs, chained, headRev, lastRev } = await readLog(dir)
        expect(seqs).toEqual(
          Array.from({ length: seqs.length }, (_, i) => i + 1),
        )
        expect(chained).toBe(true)
        expect(lastRev).toBe(headRev)
        expect(seqs.length).toBeGreaterThan(last)
        last = seqs.length
      }
    } finally {
      await removeDir(dir)
    }
  })
})

/** The log of a data dir: its seqs, whether each #commit follows the last, the head's rev. */
const readLog = async (dir: string) => {
  const database = new Database(join(dir, 'hold.sqlite'))
  try {
    const sequencer = new Sequencer(database)
    const events = sequencer.after(0, 100_000).map(bodyOf)
    let rev: string | null = null
    let chained = true
    for (const { type, body } of events) {
      if (type !== '#commit') continue
      if (body.since !== rev) chained = false
      rev = body.rev as string
    }
    const head = database.db
      .prepare('SELECT rev FROM repo_root WHERE id = 1')
      .get() as { rev: string }
    return {
      seqs: events.map((e) => e.body.seq as number),
      chained,
      headRev: head.rev,
      lastRev: rev,
    }
  } finally {
    await database.close()
  }
}
