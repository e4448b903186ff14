import { statSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHold, waitFor, type TestHold } from './_util.ts'

const MiB = 1024 * 1024

describe('the write-ahead log', () => {
  let h: TestHold
  let walBytes: () => number

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '86400000' } })
    const wal = join(h.dataDir, 'hold.sqlite-wal')
    walBytes = () => {
      try {
        return statSync(wal).size
      } catch {
        return 0
      }
    }
  })
  afterAll(() => h.stop())

  it('stays bounded through commits back to back, and is copied in full when they stop', async () => {
    const { stats, db } = h.hold.ctx
    let peak = 0
    const sampler = setInterval(() => (peak = Math.max(peak, walBytes())), 20)
    // 80 commits of 200 new records each, with the counter table written in between: without
    // a checkpoint that can finish, every frame of every one of them stays in the WAL.
    let commits = 0
    try {
      for (let batch = 0; batch < 40; batch++) {
        for (let i = 0; i < 400; i++) {
          stats.countPull(`did:plc:wal${batch}x${i}`, 'app')
        }
        commits += (await stats.flush()).commits
      }
    } finally {
      clearInterval(sampler)
    }
    expect(commits).toBe(80)
    expect(peak, `peak WAL ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(
      64 * MiB,
    )
    const copied = await waitFor(() => {
      const wal = db.walState()
      return wal !== undefined && wal.frames > 0 && wal.copied === wal.frames
    }, 5000).catch(() => false)
    expect(copied, `WAL ${JSON.stringify(db.walState())}`).toBe(true)
  })

  it('never holds a writer back to cut the file, however large it grew', async () => {
    const { stats } = h.hold.ctx
    for (let batch = 0; batch < 20; batch++) {
      for (let i = 0; i < 400; i++) {
        stats.countPull(`did:plc:cut${batch}x${i}`, 'app')
      }
      await stats.flush()
    }
    const grown = walBytes()
    expect(grown).toBeGreaterThan(16 * MiB)
    // Another writer, outside the hold, takes the write lock every 2 ms for 2 s (this thread
    // blocked, so the hold's own writes stay out of the way) and never waits for it: any
    // checkpoint that holds writers back meanwhile makes one of these attempts fail.
    const writer = new DatabaseSync(join(h.dataDir, 'hold.sqlite'))
    writer.exec('PRAGMA busy_timeout = 0')
    const pause = new Int32Array(new SharedArrayBuffer(4))
    let attempts = 0
    let refused = 0
    try {
      const until = performance.now() + 2000
      while (performance.now() < until) {
        attempts++
        try {
          writer.exec('BEGIN IMMEDIATE')
          writer.exec('ROLLBACK')
        } catch {
          refused++
        }
        Atomics.wait(pause, 0, 0, 2)
      }
    } finally {
      writer.close()
    }
    expect(attempts).toBeGreaterThan(100)
    expect(refused, `${refused} of ${attempts} attempts refused`).toBe(0)
    expect(walBytes()).toBe(grown)
  })

  it('makes flushes wait, rather than grow, while a reader holds an old snapshot', async () => {
    const { stats, writer } = h.hold.ctx
    let commits = 0
    writer.onCommit(() => commits++)
    // A reader outside the hold, in the middle of a long read: no checkpoint can pass it.
    const reader = new DatabaseSync(join(h.dataDir, 'hold.sqlite'), {
      readOnly: true,
    })
    reader.exec('BEGIN')
    reader.prepare('SELECT count(*) FROM repo_block').get()
    const work = (async () => {
      for (let batch = 0; batch < 30; batch++) {
        for (let i = 0; i < 400; i++) {
          stats.countPull(`did:plc:pinned${batch}x${i}`, 'app')
        }
        await stats.flush()
      }
    })()
    let peak = 0
    let seen = 0
    let quietSince = performance.now()
    try {
      // Until the WAL is past the bound, or the flush has stopped committing for 2 s.
      await waitFor(() => {
        peak = Math.max(peak, walBytes())
        if (commits !== seen) {
          seen = commits
          quietSince = performance.now()
        }
        return peak > 64 * MiB || performance.now() - quietSince > 2000
      }, 60_000)
    } finally {
      reader.exec('ROLLBACK')
      reader.close()
    }
    const pinnedCommits = commits
    await work
    expect(peak, `peak WAL ${(peak / MiB).toFixed(1)} MiB`).toBeLessThan(
      64 * MiB,
    )
    expect(pinnedCommits).toBeLessThan(60)
    expect(commits).toBe(60)
  })
})
