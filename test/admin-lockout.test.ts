import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AdminLockout,
  FREE_FAILURES,
} from '../src/api/middleware/admin-auth.ts'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { createRootLogger } from '../src/logger.ts'
import { HoldServer } from '../src/server.ts'
import { testPlcUrl } from './_identity.ts'
import { freePort, removeDir, sleep, tempDir } from './_util.ts'

const PASSWORD = 'a long and random admin password'
const CLIENT_HEADER = 'x-test-client'

const basic = (password: string, user = 'admin') =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

describe('admin API lockout after wrong passwords', () => {
  const logs: Record<string, unknown>[] = []
  let hold: HoldServer
  let url: string
  let dataDir: string

  beforeAll(async () => {
    dataDir = await tempDir()
    const port = await freePort()
    const env = readEnv({
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: String(port),
      HOLD_DATA_DIR: dataDir,
      HOLD_PLC_URL: await testPlcUrl(),
      HOLD_ADMIN_PASSWORD: PASSWORD,
      HOLD_STATS_FLUSH_MS: '3600000',
      // Lets one test process stand for several clients; unset, the socket address is used.
      HOLD_TRUSTED_PROXY_HEADER: CLIENT_HEADER,
    })
    hold = await HoldServer.create(envToCfg(env, 'test'), envToSecrets(env), {
      logger: createRootLogger('warn', {
        pretty: false,
        destination: new Writable({
          write(chunk, _enc, cb) {
            logs.push(JSON.parse(String(chunk)))
            cb()
          },
        }),
      }),
    })
    await hold.start()
    url = `http://127.0.0.1:${port}`
  })
  afterAll(async () => {
    await hold.destroy()
    await removeDir(dataDir)
  })

  const status = async (authorization: string | undefined, client?: string) => {
    const headers: Record<string, string> = {}
    if (authorization !== undefined) headers.authorization = authorization
    if (client !== undefined) headers[CLIENT_HEADER] = client
    const res = await fetch(`${url}/admin/status`, { headers })
    return {
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body: (await res.json()) as { error?: string; message?: string },
    }
  }

  const adminLogs = () => logs.filter((l) => l.name === 'hold:admin')

  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`)).text()
    const line = text.split('\n').find((l) => l.startsWith(`${name} `))
    return Number(line?.split(' ')[1])
  }

  it(`locks a client out after ${FREE_FAILURES} wrong passwords, refusing even the right one until the lock ends`, async () => {
    const client = '203.0.113.7'
    for (let i = 0; i < FREE_FAILURES; i++) {
      const res = await status(basic(`guess ${i}`), client)
      expect(res.status, `guess ${i}`).toBe(401)
      expect(res.body.error).toBe('InvalidCredentials')
    }
    expect(adminLogs()).toEqual([])
    // One more failure starts a lock.
    expect((await status(basic('one more'), client)).status).toBe(401)
    const locked = await status(basic(PASSWORD), client)
    expect(locked.status).toBe(429)
    expect(locked.body).toEqual({
      error: 'RateLimitExceeded',
      message:
        'too many wrong admin passwords from this client: try again in 1 s',
    })
    expect(locked.retryAfter).toBe('1')
    expect(await metric('hold_admin_auth_failures_total')).toBe(
      FREE_FAILURES + 1,
    )
    expect(await metric('hold_admin_locked_total')).toBe(1)
    expect(adminLogs()).toEqual([
      expect.objectContaining({
        level: 40,
        name: 'hold:admin',
        client: `ip:${client}`,
        lockedForS: 1,
        msg: 'admin API locked for a client after repeated wrong passwords',
      }),
    ])

    await sleep(1100)
    // The right password after the lock clears the client's failures.
    expect((await status(basic(PASSWORD), client)).status).toBe(200)
    for (let i = 0; i < FREE_FAILURES; i++) {
      expect((await status(basic(`guess ${i}`), client)).status).toBe(401)
    }
    expect((await status(basic(PASSWORD), client)).status).toBe(200)
  })

  it('locks out only the client that failed', async () => {
    const attacker = '198.51.100.9'
    for (let i = 0; i <= FREE_FAILURES; i++) {
      await status(basic(`guess ${i}`), attacker)
    }
    expect((await status(basic(PASSWORD), attacker)).status).toBe(429)
    expect((await status(basic(PASSWORD), '198.51.100.10')).status).toBe(200)
    expect((await status(basic(PASSWORD))).status).toBe(200)
  })

  it('counts a wrong user as a failure, and missing or malformed credentials not at all', async () => {
    const client = '192.0.2.44'
    for (let i = 0; i < 3 * FREE_FAILURES; i++) {
      expect((await status(undefined, client)).status).toBe(401)
      expect((await status('Basic !!!', client)).status).toBe(401)
    }
    expect((await status(basic(PASSWORD), client)).status).toBe(200)
    for (let i = 0; i <= FREE_FAILURES; i++) {
      expect((await status(basic(PASSWORD, 'root'), client)).status).toBe(401)
    }
    expect((await status(basic(PASSWORD), client)).status).toBe(429)
  })
})

describe('AdminLockout', () => {
  it('doubles the lock with each failure past the free ones, up to 15 minutes', () => {
    const lockout = new AdminLockout()
    let now = 1_000_000
    for (let i = 0; i < FREE_FAILURES; i++) {
      expect(lockout.fail('ip:a', now)).toBe(0)
      expect(lockout.lockedFor('ip:a', now)).toBe(0)
    }
    const locks: number[] = []
    for (let i = 0; i < 14; i++) {
      const lock = lockout.fail('ip:a', now)
      expect(lockout.lockedFor('ip:a', now)).toBe(lock)
      expect(lockout.lockedFor('ip:a', now + lock)).toBe(0)
      locks.push(lock / 1000)
      now += lock
    }
    expect(locks).toEqual([
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900,
    ])
    expect(lockout.lockedFor('ip:b', now)).toBe(0)
  })

  it('forgets failures an hour after the last one, and at once on a success', () => {
    const lockout = new AdminLockout()
    for (let i = 0; i < FREE_FAILURES; i++) lockout.fail('ip:a', 0)
    expect(lockout.fail('ip:a', 60 * 60 * 1000 + 1)).toBe(0)
    for (let i = 1; i < FREE_FAILURES; i++) lockout.fail('ip:b', 0)
    lockout.succeed('ip:b')
    expect(lockout.fail('ip:b', 0)).toBe(0)
  })

  it('keeps a bounded number of clients', () => {
    const lockout = new AdminLockout()
    for (let i = 0; i <= FREE_FAILURES; i++) lockout.fail('ip:first', 0)
    expect(lockout.lockedFor('ip:first', 0)).toBeGreaterThan(0)
    for (let i = 0; i < 20_000; i++) lockout.fail(`ip:${i}`, 0)
    expect(lockout.size).toBeLessThanOrEqual(10_000)
    // The oldest client was dropped to make room.
    expect(lockout.lockedFor('ip:first', 0)).toBe(0)
  })
})
