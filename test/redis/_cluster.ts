import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { ids } from '../../src/ids.ts'
import { startS3, s3Env, type TestS3 } from '../_s3.ts'
import { uploadBlob } from '../_shared.ts'
import {
  freePort,
  ownerAuth,
  removeDir,
  spawnHold,
  tempDir,
  waitFor,
  xrpc,
  type SpawnedHold,
} from '../_util.ts'

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server'

/** A real redis-server on a free port with a temp dir; stop and start it again on both. */
export type TestRedis = {
  url: string
  port: number
  /** Stops it (SIGTERM: it writes its append-only file and exits). */
  stop(): Promise<void>
  /** Starts it again on the same port and dir (what it had comes back from the file). */
  start(): Promise<void>
  close(): Promise<void>
}

export const startRedis = async (): Promise<TestRedis> => {
  const port = await freePort()
  const dir = await tempDir('atcr-hold-redis-')
  let proc: ChildProcess | undefined
  const start = async () => {
    const p = spawn(
      REDIS_SERVER,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    proc = p
    let out = ''
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d
        if (out.includes('Ready to accept connections')) resolve()
      }
      p.stdout!.on('data', onData)
      p.stderr!.on('data', onData)
      p.once('exit', (code) =>
        reject(new Error(`redis-server exited (${code}):\n${out}`)),
      )
    })
  }
  const stop = async () => {
    const p = proc
    if (!p || p.exitCode !== null) return
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGTERM')
    await exited
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    close: async () => {
      await stop()
      await removeDir(dir)
    },
  }
}

export type TestCluster = {
  redis: TestRedis
  s3: TestS3
  writer: SpawnedHold
  frontends: SpawnedHold[]
  env: Record<string, string>
  writerPort: number
  writerDir: string
  frontendDirs: string[]
  /** Starts the writer again (after a kill) on its port and data dir. */
  restartWriter(): Promise<SpawnedHold>
  /** Starts frontend `i` again on its data dir (after it stopped). */
  restartFrontend(i: number): Promise<SpawnedHold>
  close(): Promise<void>
}

/** A writer and `frontends` frontends on one Redis and one bucket, as separate processes. */
export const startCluster = async (
  opts: { frontends?: number; env?: Record<string, string> } = {},
): Promise<TestCluster> => {
  const redis = await startRedis()
  const s3 = await startS3()
  const writerPort = await freePort()
  const env = {
    ...s3Env(s3),
    HOLD_REDIS_URL: redis.url,
    HOLD_SIGNING_KEY: randomBytes(32).toString('hex'),
    HOLD_PUBLIC_URL: `http://localhost:${writerPort}`,
    HOLD_DEV_ALLOW_LOCAL_DIDS: 'true',
    // Only the stop's drain writes records: the counter table is what is checked.
    HOLD_STATS_FLUSH_MS: '3600000',
    ...opts.env,
  }
  const writerDir = await tempDir()
  const startWriter = () =>
    spawnHold({
      dataDir: writerDir,
      port: writerPort,
      env: { ...env, HOLD_ROLE: 'writer' },
    })
  const cluster: TestCluster = {
    redis,
    s3,
    writer: await startWriter(),
    frontends: [],
    env,
    writerPort,
    writerDir,
    frontendDirs: [],
    restartWriter: async () => {
      cluster.writer = await startWriter()
      return cluster.writer
    },
    restartFrontend: async (i) => {
      cluster.frontends[i] = await startFrontend(cluster.frontendDirs[i])
      return cluster.frontends[i]
    },
    close: async () => {
      for (const h of [cluster.writer, ...cluster.frontends]) {
        if (h.proc.exitCode === null && h.proc.signalCode === null) {
          h.proc.kill('SIGKILL')
          await h.exited
        }
      }
      await redis.close()
      await s3.close()
      for (const d of [writerDir, ...cluster.frontendDirs]) await removeDir(d)
    },
  }
  const startFrontend = (dir: string) =>
    spawnHold({
      dataDir: dir,
      env: {
        ...env,
        HOLD_ROLE: 'frontend',
        HOLD_WRITER_URL: `http://127.0.0.1:${writerPort}`,
      },
    })
  for (let i = 0; i < (opts.frontends ?? 2); i++) {
    const dir = await tempDir()
    cluster.frontendDirs.push(dir)
    cluster.frontends.push(await startFrontend(dir))
  }
  return cluster
}

/** Stores a blob through a frontend (the owner's push); resolves to its digest. */
export const storeBlob = async (base: string, did: string, repo: string) => {
  const { digest, status } = await uploadBlob(base, randomBytes(1024), {
    did,
    repo,
    headers: await ownerAuth(base),
  })
  if (status !== 201) throw new Error(`blob upload: ${status}`)
  return digest
}

/** One counted pull (getBlob with repo, method=GET: a presigned URL, counted). */
export const pull = async (
  base: string,
  did: string,
  repo: string,
  cid: string,
): Promise<number> =>
  (await xrpc(base, ids.SyncGetBlob, { did, cid, repo, method: 'GET' })).status

export type Stats = { pullCount: number; pushCount: number }

export const getStats = async (
  base: string,
  did: string,
  repo: string,
): Promise<Stats & { status: number }> => {
  const res = await xrpc<Stats>(base, ids.HoldGetStats, { did, repo })
  return { ...res.body, status: res.status }
}

/** Waits until getStats at `base` says `pulls` (or times out with what it said last). */
export const waitForPulls = async (
  base: string,
  did: string,
  repo: string,
  pulls: number,
  timeoutMs = 20_000,
): Promise<number> => {
  let last = -1
  try {
    await waitFor(async () => {
      const s = await getStats(base, did, repo)
      last = s.pullCount
      return s.status === 200 && s.pullCount === pulls
    }, timeoutMs)
  } catch {
    // Reported by the caller's expectation.
  }
  return last
}
