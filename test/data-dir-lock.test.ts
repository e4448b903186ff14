import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { DataDirError } from '../src/data-dir.ts'
import { testPlcUrl } from './_identity.ts'
import {
  freePort,
  removeDir,
  ROOT,
  spawnHold,
  startHold,
  TEST_OWNER,
  tempDir,
  xrpc,
} from './_util.ts'

/** `node src/bin.ts` on dataDir, killed if it has not exited after timeoutMs. */
const runSecondHold = async (
  dataDir: string,
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<{ code: number | null; output: string; exitedAlone: boolean }> => {
  const proc = spawn(process.execPath, ['src/bin.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOLD_HOST: '127.0.0.1',
      HOLD_DATA_DIR: dataDir,
      HOLD_PLC_URL: await testPlcUrl(),
      HOLD_OWNER_DID: TEST_OWNER,
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  proc.stdout.on('data', (d) => (output += d))
  proc.stderr.on('data', (d) => (output += d))
  let exitedAlone = true
  const timer = setTimeout(() => {
    exitedAlone = false
    proc.kill('SIGKILL')
  }, timeoutMs)
  const code = await new Promise<number | null>((resolve) =>
    proc.once('exit', (c) => resolve(c)),
  )
  clearTimeout(timer)
  return { code, output, exitedAlone }
}

const listening = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })

describe('one hold per data dir', () => {
  let dataDir: string
  beforeAll(async () => {
    dataDir = await tempDir()
  })
  afterAll(() => removeDir(dataDir))

  it('refuses a second start on a data dir in use, in one line naming the holder, before it commits or listens', async () => {
    const port = await freePort()
    const publicUrl = `http://localhost:${port}`
    const first = await spawnHold({
      dataDir,
      port,
      env: { HOLD_PUBLIC_URL: publicUrl },
    })
    try {
      const before = await xrpc<{ rev: string }>(
        first.url,
        ids.SyncGetLatestCommit,
        { did: first.did },
      )
      // A changed setting that would make the second start commit a new captain.
      const secondPort = await freePort()
      const second = await runSecondHold(dataDir, {
        HOLD_PORT: String(secondPort),
        HOLD_PUBLIC_URL: publicUrl,
        HOLD_PUBLIC: 'false',
      })
      expect(second.exitedAlone).toBe(true)
      expect(second.code).toBe(1)
      const lines = second.output.trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain(`HOLD_DATA_DIR ${dataDir} is in use`)
      expect(lines[0]).toMatch(
        new RegExp(`pid ${first.proc.pid} on \\S+, started \\d{4}-`),
      )
      expect(await listening(secondPort)).toBe(false)
      const after = await xrpc<{ rev: string }>(
        first.url,
        ids.SyncGetLatestCommit,
        { did: first.did },
      )
      expect(after.body.rev).toBe(before.body.rev)
      const captain = await xrpc<{ value: { public: boolean } }>(
        first.url,
        ids.RepoGetRecord,
        { repo: first.did, collection: ids.HoldCaptain, rkey: 'self' },
      )
      expect(captain.body.value.public).toBe(true)
    } finally {
      first.proc.kill('SIGTERM')
      await first.exited
    }
  })

  it('is free again once the holder is killed, with no clean stop', async () => {
    const dir = await tempDir()
    const port = await freePort()
    const env = { HOLD_PUBLIC_URL: `http://localhost:${port}` }
    try {
      const first = await spawnHold({ dataDir: dir, port, env })
      first.proc.kill('SIGKILL')
      await first.exited
      const second = await spawnHold({ dataDir: dir, port, env })
      try {
        const health = await fetch(`${second.url}/xrpc/_health`)
        expect(health.status).toBe(200)
      } finally {
        second.proc.kill('SIGTERM')
        await second.exited
      }
    } finally {
      await removeDir(dir)
    }
  })

  it('refuses a second hold in the same process too, and frees the dir on stop', async () => {
    const dir = await tempDir()
    const env = { HOLD_PUBLIC_URL: 'http://lock.test' }
    try {
      const h = await startHold({ dataDir: dir, env })
      await expect(startHold({ dataDir: dir, env })).rejects.toThrow(
        DataDirError,
      )
      await h.stop()
      const again = await startHold({ dataDir: dir, env })
      await again.stop()
    } finally {
      await removeDir(dir)
    }
  })
})
