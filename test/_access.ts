import { createHash, createHmac } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import http from 'node:http'
import { join } from 'node:path'
import type { Keypair } from '@atproto/crypto'
import { expect } from 'vitest'
import { ids } from '../src/ids.ts'
import { bearer, identity } from './_identity.ts'
import { TEST_OWNER, xrpc, type TestHold } from './_util.ts'

/** Helpers shared by the access-control and hostile-input tests. */

export const GET_BLOB = ids.SyncGetBlob
export const CREATE_RECORD = ids.RepoCreateRecord
export const DELETE_RECORD = ids.RepoDeleteRecord
export const REQUEST_CREW = ids.HoldRequestCrew
export const CREW = ids.HoldCrew

export const sha256Hex = (bytes: Uint8Array | string) =>
  createHash('sha256').update(bytes).digest('hex')

export const b64url = (value: unknown) =>
  Buffer.from(
    typeof value === 'string' ? value : JSON.stringify(value),
  ).toString('base64url')

/**
 * A JWT built by hand, for the tokens createServiceJwt will not make: any header, any payload,
 * signed with `keypair` (a real secp256k1 signature), an HMAC key, or not at all.
 */
export const handJwt = async (
  header: Record<string, unknown>,
  payload: unknown,
  sign: { keypair?: Keypair; hmac?: string } = {},
): Promise<string> => {
  const input = `${b64url(header)}.${b64url(payload)}`
  let sig = ''
  if (sign.keypair) {
    sig = Buffer.from(await sign.keypair.sign(Buffer.from(input))).toString(
      'base64url',
    )
  } else if (sign.hmac) {
    sig = createHmac('sha256', sign.hmac).update(input).digest('base64url')
  }
  return `${input}.${sig}`
}

/** A service-token payload as createServiceJwt writes it, with overrides. */
export const claims = (
  over: Record<string, unknown> & { iss: string; aud: string },
): Record<string, unknown> => {
  const now = Math.floor(Date.now() / 1000)
  return { iat: now, exp: now + 60, jti: `${now}${Math.random()}`, ...over }
}

/** A hand-built ES256K token from `iss` (signed with its registered key) with the given claims. */
export const signedBy = async (
  iss: string,
  over: Record<string, unknown> & { aud: string },
  header: Record<string, unknown> = { typ: 'JWT', alg: 'ES256K' },
): Promise<string> =>
  handJwt(header, claims({ iss, ...over }), {
    keypair: await identity(iss.split('#')[0]),
  })

/** Every file under dir (recursively), sorted; [] when dir does not exist. */
export const filesUnder = async (dir: string): Promise<string[]> => {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .sort()
  } catch {
    return []
  }
}

export const blobFiles = (h: TestHold) =>
  filesUnder(join(h.dataDir, 'blobs', 'sha256'))

export const latestRev = async (h: TestHold): Promise<string> => {
  const res = await xrpc<{ rev: string }>(h.url, ids.SyncGetLatestCommit, {
    did: h.did,
  })
  expect(res.status).toBe(200)
  return res.body.rev
}

export type Snapshot = {
  rev: string
  pulls: number
  pushes: number
  blobs: string[]
}

/** What a request could have changed: the repo head, the counters, the stored blobs. */
export const snapshot = async (h: TestHold): Promise<Snapshot> => ({
  rev: await latestRev(h),
  pulls: h.hold.ctx.stats.totals.pulls,
  pushes: h.hold.ctx.stats.totals.pushes,
  blobs: await blobFiles(h),
})

export type Stats = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
}

export const getStats = async (
  h: TestHold,
  did: string,
  repo: string,
): Promise<Stats> => {
  const res = await xrpc<Stats>(h.url, ids.HoldGetStats, { did, repo })
  expect(res.status).toBe(200)
  return res.body
}

export const expectZeroStats = async (
  h: TestHold,
  did: string,
  repo: string,
) => {
  const s = await getStats(h, did, repo)
  expect([s.pullCount, s.pushCount]).toEqual([0, 0])
}

/** An XRPC error response: the status and that the body is `{error, message}` strings. */
export const expectXrpcError = (
  res: { status: number; body: unknown },
  status: number,
  error?: string,
) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status)
  const body = res.body as { error?: unknown; message?: unknown }
  expect(typeof body).toBe('object')
  expect(typeof body.error).toBe('string')
  expect(typeof body.message).toBe('string')
  if (error !== undefined) expect(body.error).toBe(error)
}

export type RawResult = {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  body: unknown
}

/**
 * An HTTP request sent exactly as given (path unnormalised, any method, body with or without
 * content-length), for what fetch would clean up or refuse to send.
 */
export const raw = (
  base: string,
  opts: {
    method?: string
    path: string
    headers?: Record<string, string | number>
    body?: string | Buffer
    /** send the body chunked, without content-length */
    chunked?: boolean
  },
): Promise<RawResult> =>
  new Promise((resolve, reject) => {
    const url = new URL(base)
    const headers = { ...opts.headers }
    if (opts.body !== undefined && !opts.chunked) {
      headers['content-length'] ??= Buffer.byteLength(opts.body)
    }
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method: opts.method ?? 'GET',
        path: opts.path,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          if (res.headers['content-type']?.includes('json')) {
            try {
              body = JSON.parse(text)
            } catch {
              body = text
            }
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, body })
        })
        res.on('error', reject)
      },
    )
    // The server may answer (413, 403) before reading a body; a write after that is not a failure.
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err)
    })
    if (opts.body !== undefined) {
      if (opts.chunked) {
        const buf = Buffer.from(opts.body)
        for (let i = 0; i < buf.length; i += 256) {
          req.write(buf.subarray(i, i + 256))
        }
      } else {
        req.write(opts.body)
      }
    }
    req.end()
  })

/** getBlob's answer to method=GET/PUT: a signed URL, or an XRPC error. */
export type SignedUrlBody = {
  url: string
  method: string
  expiresAt: string
  error?: string
  message?: string
}

/** Asks for a PUT URL as `headers` and uploads `bytes` through it. */
export const push = async (
  h: TestHold,
  bytes: Uint8Array,
  headers: Record<string, string>,
  repo?: string,
) => {
  const signed = await xrpc<SignedUrlBody>(
    h.url,
    GET_BLOB,
    {
      did: TEST_OWNER,
      cid: `sha256:${sha256Hex(bytes)}`,
      method: 'PUT',
      repo,
    },
    { headers },
  )
  if (signed.status !== 200) return { signed, upload: undefined }
  const upload = await fetch(signed.body.url, { method: 'PUT', body: bytes })
  await upload.arrayBuffer()
  return { signed, upload }
}

/** Authorization for `iss` calling `lxm` on the hold `h`. */
export const tokenFor = (h: { did: string }, iss: string, lxm: string) =>
  bearer({ iss, aud: h.did, lxm })

/** Adds a crew member through com.atproto.repo.createRecord, as `as` (the owner by default). */
export const addCrew = async (
  h: TestHold,
  member: string,
  permissions: string[],
  opts: { as: string; role?: string; rkey?: string },
) => {
  await identity(member)
  return xrpc<{ uri: string; cid: string; commit: { rev: string } }>(
    h.url,
    CREATE_RECORD,
    {},
    {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(await tokenFor(h, opts.as, CREATE_RECORD)),
      },
      body: JSON.stringify({
        repo: h.did,
        collection: CREW,
        rkey: opts.rkey,
        record: {
          $type: CREW,
          member,
          role: opts.role ?? 'write',
          permissions,
          addedAt: new Date().toISOString(),
        },
      }),
    },
  )
}

export const removeCrew = async (
  h: TestHold,
  rkey: string,
  opts: { as: string; collection?: string },
) =>
  xrpc<{ commit?: { rev: string } }>(
    h.url,
    DELETE_RECORD,
    {},
    {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(await tokenFor(h, opts.as, DELETE_RECORD)),
      },
      body: JSON.stringify({
        repo: h.did,
        collection: opts.collection ?? CREW,
        rkey,
      }),
    },
  )

/** Waits, when the fixed one-minute count window is about to turn, until it has turned. */
export const awayFromMinuteBoundary = async (needMs = 3000) => {
  const left = 60_000 - (Date.now() % 60_000)
  if (left < needMs) await new Promise((r) => setTimeout(r, left + 50))
}
