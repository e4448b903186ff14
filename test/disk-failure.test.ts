import { execFileSync, spawn } from 'node:child_process'
import { chmod, mkdir, open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRootLogger } from '../src/logger.ts'
import { MAX_PENDING_PAIRS } from '../src/stats/counter-store.ts'
import { testPlcUrl } from './_identity.ts'
import {
  removeDir,
  ROOT,
  startHold,
  TEST_OWNER,
  tempDir,
  waitFor,
  xrpc,
  type TestHold,
} from './_util.ts'

type LogLine = { level: number; name?: string; msg: string }

/**
 * A disk that fills up. As root (CI runs as root) the data dir is a small tmpfs of its own,
 * filled with a file until the kernel says ENOSPC: SQLite meets a real full disk. Where mounting
 * is not allowed, SQLite's max_page_count caps the database at its size instead, which fails
 * writes with the same SQLITE_FULL.
 */
const smallDisk = async (): Promise<{
  dataDir: string
  fill: (h: TestHold) => Promise<void>
  free: (h: TestHold) => Promise<void>
  dispose: () => Promise<void>
  real: boolean
}> => {
  const dataDir = await tempDir()
  let mounted = false
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', dataDir], {
      stdio: 'ignore',
    })
    mounted = true
  } catch {
    // not allowed here: max_page_count below
  }
  const filler = join(dataDir, 'filler')
  return {
    dataDir,
    real: mounted,
    fill: async (h) => {
      if (!mounted) {
        const { page_count } = h.hold.ctx.db.db
          .prepare('PRAGMA page_count')
          .get() as { page_count: number }
        h.hold.ctx.db.db.exec(`PRAGMA max_page_count = ${page_count}`)
        return
      }
      const file = await open(filler, 'w')
      try {
        for (const size of [1 << 20, 1 << 16, 1 << 12, 512]) {
          const chunk = Buffer.alloc(size, 1)
          for (;;) {
            try {
              await file.write(chunk)
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
              throw err
            }
          }
        }
      } finally {
        await file.close().catch(() => undefined)
      }
    },
    free: async (h) => {
      if (!mounted) {
        h.hold.ctx.db.db.exec('PRAGMA max_page_count = 1073741823')
        return
      }
      await rm(filler, { force: true })
    },
    dispose: async () => {
      if (mounted) execFileSync('umount', ['-l', dataDir])
      await removeDir(dataDir)
    },
  }
}

describe('a full disk', () => {
  let disk: Awaited<ReturnType<typeof smallDisk>>
  let h: TestHold
  const lines: LogLine[] = []

  beforeAll(async () => {
    disk = await smallDisk()
    h = await startHold({
      dataDir: disk.dataDir,
      env: { HOLD_STATS_FLUSH_MS: '200' },
      overrides: {
        logger: createRootLogger('info', {
          pretty: false,
          destination: {
            write: (line: string) => {
              lines.push(JSON.parse(line) as LogLine)
            },
          },
        }),
      },
    })
  })
  afterAll(async () => {
    await disk.free(h).catch(() => undefined)
    await h.stop().catch(() => undefined)
    await disk.dispose()
  })

  const health = () =>
    xrpc<{ error?: string; message?: string }>(h.url, '_health')

  it('turns _health to 503 with one line, logs it once, keeps the counts in memory and writes them when space is back', async () => {
    const { stats } = h.hold.ctx
    stats.countPull('did:plc:beforefull', 'app')
    await stats.flush()
    expect((await health()).status).toBe(200)

    await disk.fill(h)
    // New pairs need new pages: the next persist cannot be written.
    const counted: string[] = []
    const failing = await waitFor(async () => {
      for (let i = 0; i < 200; i++) {
        const did = `did:plc:duringfull${counted.length}`
        stats.countPull(did, 'app')
        counted.push(did)
      }
      const res = await health()
      return res.status === 503 ? res : undefined
    }, 20_000).then((res) => res!)
    expect(failing.body.error).toBe('WritesFailing')
    expect(failing.body.message).toMatch(
      new RegExp(`^HOLD_DATA_DIR ${disk.dataDir} is full \\(`),
    )
    // Several seconds of failing persists, flushes and probes.
    for (let i = 0; i < 30; i++) {
      stats.countPull(counted[i], 'app')
      await new Promise((r) => setTimeout(r, 100))
    }
    expect((await health()).status).toBe(503)
    const errors = lines.filter((l) => l.level >= 50)
    expect(errors.map((l) => l.msg)).toEqual([failing.body.message])
    expect(errors[0].name).toBe('hold:db')
    // Accepted counts are still served from memory.
    expect(stats.get(counted[0], 'app').pullCount).toBe(2)

    await disk.free(h)
    await waitFor(async () => (await health()).status === 200, 20_000)
    expect(
      lines.some((l) => l.msg === 'writes to the data dir work again'),
    ).toBe(true)
    await stats.flush()
    expect(stats.pendingPairs).toBe(0)
    expect(stats.dirtyCounters()).toBe(0)
    for (const [i, did] of [
      counted[0],
      counted[29],
      counted.at(-1)!,
    ].entries()) {
      const res = await xrpc<{ value: { pullCount: number } }>(
        h.url,
        'com.atproto.repo.getRecord',
        {
          repo: h.did,
          collection: 'io.atcr.hold.stats',
          rkey: Buffer.from(`${did}:app`).toString('base64url'),
        },
      )
      expect(res.status, `record of ${did}`).toBe(200)
      expect(res.body.value.pullCount).toBe(i < 2 ? 2 : 1)
    }
  })

  it(`keeps at most ${MAX_PENDING_PAIRS} pairs in memory while it lasts, and counts on for those`, async () => {
    const { stats } = h.hold.ctx
    await disk.fill(h)
    try {
      let n = 0
      await waitFor(async () => {
        for (let i = 0; i < 200; i++)
          stats.countPull(`did:plc:again${n++}`, 'app')
        return (await health()).status === 503
      }, 20_000)
      const before = stats.unrecorded
      for (let i = 0; stats.pendingPairs < MAX_PENDING_PAIRS; i++) {
        stats.countPull(`did:plc:bound${i}`, 'app')
      }
      stats.countPull('did:plc:boundnew1', 'app')
      stats.countPull('did:plc:boundnew2', 'app')
      stats.countPull('did:plc:bound0', 'app')
      expect(stats.pendingPairs).toBe(MAX_PENDING_PAIRS)
      expect(stats.unrecorded - before).toBe(2)
      expect(stats.get('did:plc:bound0', 'app').pullCount).toBe(2)
      expect(stats.get('did:plc:boundnew1', 'app').pullCount).toBe(0)
      const metrics = await (await fetch(`${h.url}/metrics`)).text()
      expect(metrics).toMatch(/^hold_stats_unrecorded_total [1-9]/m)
    } finally {
      // Stopped while the disk is still full: what is pending cannot be written, and the stop
      // says so instead of hanging.
      await expect(h.stop()).rejects.toThrow(/full/)
    }
  })
})

describe('an unwritable data dir', () => {
  let parent: string
  beforeAll(async () => {
    parent = await tempDir()
    await chmod(parent, 0o755)
  })
  afterAll(() => removeDir(parent))

  it('stops the start with one line naming HOLD_DATA_DIR', async () => {
    const dataDir = join(parent, 'data')
    await mkdir(dataDir, { mode: 0o755 })
    // Root writes anywhere: the hold runs as another user then, as the image runs as uid 1000.
    const asRoot = process.getuid?.() === 0
    if (!asRoot) await chmod(dataDir, 0o555)
    const proc = spawn(process.execPath, ['src/bin.ts'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOLD_HOST: '127.0.0.1',
        HOLD_PORT: '0',
        HOLD_DATA_DIR: dataDir,
        HOLD_PLC_URL: await testPlcUrl(),
        HOLD_OWNER_DID: TEST_OWNER,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    })
    let output = ''
    proc.stdout.on('data', (d) => (output += d))
    proc.stderr.on('data', (d) => (output += d))
    const code = await new Promise<number | null>((resolve) =>
      proc.once('exit', resolve),
    )
    expect(code).toBe(1)
    const out = output.trim().split('\n')
    expect(out).toHaveLength(1)
    expect(out[0]).toMatch(
      new RegExp(
        `^atcr-hold: HOLD_DATA_DIR ${dataDir} is not writable by uid \\d+ \\(`,
      ),
    )
    expect(out[0]).toContain('chown -R 1000:1000')
  })
})
