import { statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WAL_TRUNCATE_BYTES } from '../src/db.ts'
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

  it('stays bounded through commits back to back, and shrinks when they stop', async () => {
    const { stats } = h.hold.ctx
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
    const shrunk = await waitFor(
      () => walBytes() <= WAL_TRUNCATE_BYTES,
      5000,
    ).catch(() => false)
    expect(shrunk, `WAL now ${(walBytes() / MiB).toFixed(1)} MiB`).toBe(true)
  })
})
