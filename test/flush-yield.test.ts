import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer } from '../src/server.ts'
import { testPlcUrl } from './_identity.ts'
import { freePort, removeDir, spawnHold, TEST_OWNER, tempDir } from './_util.ts'

const PAIRS = 10_000

/**
 * A data dir whose counter table has PAIRS counters the repo has no records for, as a crash
 * in the middle of a large import leaves it: the next start flushes them all at once.
 */
const seedDirtyCounters = async (dataDir: string, port: number) => {
  const env = readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: String(port),
    HOLD_DATA_DIR: dataDir,
    HOLD_OWNER_DID: TEST_OWNER,
    HOLD_PLC_URL: await testPlcUrl(),
    LOG_LEVEL: 'silent',
  })
  const hold = await HoldServer.create(envToCfg(env, 'test'), envToSecrets(env))
  hold.ctx.stats.importBaselines(
    Array.from({ length: PAIRS }, (_, i) => ({
      did: `did:plc:flushyield${String(i).padStart(10, '0')}`,
      repository: 'app',
      pullCount: i + 1,
      pushCount: 0,
    })),
  )
  await hold.ctx.destroy()
}

describe('a large flush and other requests', () => {
  let dataDir: string
  beforeAll(async () => {
    dataDir = await tempDir()
  })
  afterAll(() => removeDir(dataDir))

  it('keeps answering _health between its commits', async () => {
    const port = await freePort()
    await seedDirtyCounters(dataDir, port)
    const hold = await spawnHold({
      dataDir,
      port,
      env: { LOG_LEVEL: 'debug' },
    })
    try {
      // The start-up flush writes every counter; _health is asked back to back meanwhile, and
      // the gaps between its answers measured (the first answer also pays for a new connection).
      const answered: number[] = []
      const flushed = () =>
        hold
          .output()
          .split('\n')
          .filter((line) => line.includes('"flushed stats"'))
          .map(
            (line) =>
              JSON.parse(line) as {
                records: number
                commits: number
                ms: number
              },
          )
          .find((f) => f.records === PAIRS)
      while (!flushed()) {
        const res = await fetch(`${hold.url}/xrpc/_health`)
        await res.arrayBuffer()
        expect(res.status).toBe(200)
        answered.push(performance.now())
      }
      const flush = flushed()!
      const gaps = answered.slice(1).map((t, i) => t - answered[i])
      const longest = Math.max(...gaps)
      expect(flush.commits).toBe(PAIRS / 200)
      // Without yielding, one gap spans the whole flush; with it, a gap is about one commit.
      expect(
        longest,
        `longest gap ${longest.toFixed(0)} ms in a flush of ${flush.ms.toFixed(0)} ms`,
      ).toBeLessThan(flush.ms / 4)
      expect(answered.length).toBeGreaterThan(flush.commits / 2)
    } finally {
      hold.proc.kill('SIGTERM')
      await hold.exited
    }
  })
})
