/**
 * What the tests and the benchmark scripts both use to drive a hold from outside: a free port,
 * a temp data dir, a blob upload through the hold's own API, and waiting for a hold started as
 * a child process to say it listens. It loads none of the hold's modules beyond its NSIDs, so
 * a script can use it beside a hold it measures in another process.
 */
import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ids } from '../src/ids.ts'

export const ROOT = new URL('..', import.meta.url).pathname

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

/** The sha256:<hex> digest a blob is stored and asked for under. */
export const blobDigest = (bytes: Uint8Array): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/**
 * Stores a blob through the hold's own API: getBlob method=PUT with `headers` (a service
 * token), then PUT to the signed URL. Throws if the hold refuses the signed URL.
 */
export const uploadBlob = async (
  base: string,
  bytes: Uint8Array,
  opts: { did: string; repo?: string; headers: Record<string, string> },
): Promise<{ digest: string; status: number }> => {
  const digest = blobDigest(bytes)
  const url = new URL(`/xrpc/${ids.SyncGetBlob}`, base)
  url.searchParams.set('did', opts.did)
  url.searchParams.set('cid', digest)
  url.searchParams.set('method', 'PUT')
  if (opts.repo !== undefined) url.searchParams.set('repo', opts.repo)
  const signed = await fetch(url, { headers: opts.headers })
  const text = await signed.text()
  if (signed.status !== 200) {
    throw new Error(`getBlob PUT: ${signed.status} ${text}`)
  }
  const { url: signedUrl } = JSON.parse(text) as { url: string }
  const res = await fetch(signedUrl, { method: 'PUT', body: bytes })
  await res.arrayBuffer()
  return { digest, status: res.status }
}

/**
 * Resolves once the child has printed `marker` on stdout; rejects, with what it printed, if it
 * exits first or `timeoutMs` (when given) passes.
 */
export const waitForStart = (
  proc: ChildProcess,
  marker: string,
  timeoutMs?: number,
): Promise<void> =>
  new Promise((resolve, reject) => {
    let out = ''
    const done = (err?: Error) => {
      clearTimeout(timer)
      proc.stdout!.off('data', onData)
      proc.off('exit', onExit)
      if (err) reject(err)
      else resolve()
    }
    const onData = (d: Buffer) => {
      out += d
      if (out.includes(marker)) done()
    }
    const onExit = () => done(new Error(`exited before starting:\n${out}`))
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => done(new Error(`did not start:\n${out}`)), timeoutMs)
    proc.stdout!.on('data', onData)
    proc.once('exit', onExit)
  })
