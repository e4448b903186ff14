import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer, type HoldOptions } from '../src/server.ts'
import { bearer, identity, testPlcUrl } from './_identity.ts'

export const ROOT = new URL('..', import.meta.url).pathname

/** The owner test holds get unless a test sets HOLD_OWNER_DID itself (even to ''). */
export const TEST_OWNER = 'did:plc:testowner0000000000000000'

/**
 * Every test hold resolves DIDs through the test directory and, unless told otherwise, is
 * owned by TEST_OWNER, whose key that directory holds, so tests can push with real tokens.
 */
const testEnv = async (
  env: Record<string, string> = {},
): Promise<Record<string, string>> => {
  const owner = env.HOLD_OWNER_DID ?? TEST_OWNER
  if (owner) await identity(owner)
  return {
    HOLD_PLC_URL: await testPlcUrl(),
    HOLD_OWNER_DID: owner,
    ...env,
  }
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })

export const tempDir = (prefix = 'atcr-hold-test-'): Promise<string> =>
  mkdtemp(join(tmpdir(), prefix))

export const removeDir = (dir: string) =>
  rm(dir, { recursive: true, force: true })

export type TestHold = {
  hold: HoldServer
  url: string
  did: string
  dataDir: string
  port: number
  stop: () => Promise<void>
}

/**
 * Starts the real hold in this process on a free port with a temp data dir (or the given one).
 * `env` is the HOLD_* environment, as an operator would write it.
 */
export const startHold = async (
  opts: {
    env?: Record<string, string>
    dataDir?: string
    port?: number
    overrides?: HoldOptions
  } = {},
): Promise<TestHold> => {
  const port = opts.port ?? (await freePort())
  const dataDir = opts.dataDir ?? (await tempDir())
  const env = readEnv({
    HOLD_HOST: '127.0.0.1',
    HOLD_PORT: String(port),
    HOLD_DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    ...(await testEnv(opts.env)),
  })
  const hold = await HoldServer.create(
    envToCfg(env, 'test'),
    envToSecrets(env),
    opts.overrides,
  )
  await hold.start()
  return {
    hold,
    url: `http://localhost:${port}`,
    did: hold.ctx.cfg.did,
    dataDir,
    port,
    stop: () => hold.destroy(),
  }
}

export type SpawnedHold = {
  proc: ChildProcess
  url: string
  did: string
  port: number
  output: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts `node src/bin.ts` (what `npm start` runs) as a child process and waits until it listens. */
export const spawnHold = async (opts: {
  dataDir: string
  env?: Record<string, string>
  port?: number
}): Promise<SpawnedHold> => {
  const port = opts.port ?? (await freePort())
  const proc = spawn(process.execPath, ['src/bin.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: String(port),
      HOLD_DATA_DIR: opts.dataDir,
      LOG_LEVEL: 'info',
      ...(await testEnv(opts.env)),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<{
    code: number | null
    signal: NodeJS.Signals | null
  }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  )
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`hold did not start:\n${out}`)),
      20_000,
    )
    const check = () => {
      if (out.includes('hold started')) {
        clearTimeout(timer)
        resolve()
      }
    }
    proc.stdout!.on('data', check)
    exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`hold exited before starting:\n${out}`))
    })
  })
  return {
    proc,
    url: `http://localhost:${port}`,
    did: `did:web:localhost%3A${port}`,
    port,
    output: () => out,
    exited,
  }
}

/** Runs `node src/bin.ts` to completion (for start-up failures) and returns its output. */
export const runHoldToExit = (
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> =>
  new Promise((resolve) => {
    const proc = spawn(process.execPath, ['src/bin.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    proc.stdout.on('data', (d) => (output += d))
    proc.stderr.on('data', (d) => (output += d))
    proc.once('exit', (code) => resolve({ code, output }))
  })

export type XrpcResult<T = Record<string, unknown>> = {
  status: number
  headers: Headers
  body: T
}

/** Calls an XRPC query with properly encoded parameters. */
export const xrpc = async <T = Record<string, unknown>>(
  base: string,
  nsid: string,
  params: Record<string, string | number | boolean | undefined> = {},
  init: RequestInit = {},
): Promise<XrpcResult<T>> => {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined) url.searchParams.set(k, String(v))
  }
  const res = await fetch(url, init)
  const text = await res.text()
  let body: unknown = text
  if (res.headers.get('content-type')?.includes('json')) body = JSON.parse(text)
  return { status: res.status, headers: res.headers, body: body as T }
}

export const getBytes = async (
  base: string,
  nsid: string,
  params: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; bytes: Uint8Array }> => {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
  const res = await fetch(url)
  return {
    status: res.status,
    headers: res.headers,
    bytes: new Uint8Array(await res.arrayBuffer()),
  }
}

/** The did:key of the #atproto key a DID document publishes. */
export const atprotoKeyFromDidDoc = (doc: {
  verificationMethod: { id: string; publicKeyMultibase: string }[]
}): string => {
  const vm = doc.verificationMethod.find((m) => m.id.endsWith('#atproto'))
  if (!vm) throw new Error('no #atproto verification method')
  return `did:key:${vm.publicKeyMultibase}`
}

/** The hold's DID and captain owner, as any client can read them. */
export const holdInfo = async (
  base: string,
): Promise<{ did: string; owner: string }> => {
  const { did } = (
    await xrpc<{ did: string }>(base, 'com.atproto.server.describeServer')
  ).body
  const captain = await xrpc<{ value: { owner: string } }>(
    base,
    'com.atproto.repo.getRecord',
    { repo: did, collection: 'io.atcr.hold.captain', rkey: 'self' },
  )
  return { did, owner: captain.body.value.owner }
}

/** Authorization headers with a real service token from the hold's owner (or `as`). */
export const ownerAuth = async (
  base: string,
  opts: { as?: string; lxm?: string } = {},
): Promise<{ authorization: string }> => {
  const { did, owner } = await holdInfo(base)
  return bearer({ iss: opts.as ?? owner, aud: did, lxm: opts.lxm })
}

/**
 * Stores a blob through the hold's own API, as its owner: getBlob method=PUT with a service
 * token, then PUT to the signed URL.
 */
export const pushBlob = async (
  base: string,
  bytes: Uint8Array,
  opts: { did?: string; repo?: string; as?: string } = {},
): Promise<{ digest: string; status: number }> => {
  const { createHash } = await import('node:crypto')
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  const signed = await xrpc<{ url: string }>(
    base,
    'com.atproto.sync.getBlob',
    {
      did: opts.did ?? 'did:plc:testowner',
      cid: digest,
      method: 'PUT',
      repo: opts.repo,
    },
    { headers: await ownerAuth(base, { as: opts.as }) },
  )
  if (signed.status !== 200) {
    throw new Error(
      `getBlob PUT: ${signed.status} ${JSON.stringify(signed.body)}`,
    )
  }
  const res = await fetch(signed.body.url, { method: 'PUT', body: bytes })
  await res.arrayBuffer()
  return { digest, status: res.status }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls until fn returns a truthy value or the timeout passes. */
export const waitFor = async <T>(
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
): Promise<T> => {
  const started = Date.now()
  for (;;) {
    const value = await fn()
    if (value) return value
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting')
    await sleep(20)
  }
}
