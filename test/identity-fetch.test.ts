import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  identityFetch,
  isPublicAddress,
  MAX_DID_DOC_BYTES,
} from '../src/auth/identity-fetch.ts'
import { GET_BLOB, expectXrpcError } from './_access.ts'
import {
  TEST_OWNER,
  removeDir,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

/** A DID document publishing key as #atproto, padded with trailing whitespace to `pad` bytes. */
const didDoc = (did: string, key: Keypair, pad = 0): string => {
  const json = JSON.stringify({
    '@context': ['https://www.w3.org/ns/did/v1'],
    id: did,
    alsoKnownAs: [],
    verificationMethod: [
      {
        id: `${did}#atproto`,
        type: 'Multikey',
        controller: did,
        publicKeyMultibase: key.did().slice('did:key:'.length),
      },
    ],
    service: [],
  })
  return json + ' '.repeat(Math.max(0, pad - json.length))
}

type Local = {
  server: Server
  port: number
  /** TCP connections accepted so far. */
  connections: () => number
  close: () => Promise<void>
}

/** An HTTP server on [::] (so 127.0.0.1, ::1 and ::ffff:127.0.0.1 all reach it) that counts connections. */
const local = async (
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Local> => {
  const server = createServer(handler)
  let connections = 0
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '::', resolve))
  return {
    server,
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A token from iss (any string) to aud, signed with key, for getBlob. */
const token = (iss: string, aud: string, key: Keypair) =>
  createServiceJwt({ iss, aud, lxm: GET_BLOB, keypair: key })

/** A call that needs blob:write: 401 when the token fails, 403 when it verifies (not crew). */
const askPutUrl = async (h: TestHold, jwt: string) =>
  xrpc(
    h.url,
    GET_BLOB,
    { did: TEST_OWNER, cid: `sha256:${'ab'.repeat(32)}`, method: 'PUT' },
    { headers: { authorization: `Bearer ${jwt}` } },
  )

const expectAuthenticated = (res: { status: number; body: unknown }) => {
  expectXrpcError(res, 403, 'Forbidden')
  expect((res.body as { message: string }).message).toContain(
    'not a crew member',
  )
}

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.255.255.254',
    '0.0.0.0',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '100.100.100.200',
    '224.0.0.1',
    '239.255.255.250',
    '255.255.255.255',
    '240.0.0.1',
    '198.18.0.1',
    '192.0.2.1',
    '::',
    '::1',
    '[::1]',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '[::ffff:7f00:1]',
    '::ffff:169.254.169.254',
    '::ffff:10.0.0.1',
    '64:ff9b::7f00:1',
    '64:ff9b::a9fe:a9fe',
    '2002:7f00:1::1',
    '2002:c0a8:101::',
    '::127.0.0.1',
    'fe80::1',
    'fe80::1%eth0',
    'fc00::1',
    'fd00:ec2::254',
    'fdaa:0:1::3',
    'ff02::1',
    '2001:db8::1',
    '2001::1',
    'localhost',
    'not an address',
    '',
  ])('refuses %s', (address) => {
    expect(isPublicAddress(address)).toBe(false)
  })

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '93.184.216.34',
    '172.32.0.1',
    '100.128.0.1',
    '192.169.0.1',
    '2606:4700:4700::1111',
    '[2a00:1450:4001:80b::200e]',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ])('accepts %s', (address) => {
    expect(isPublicAddress(address)).toBe(true)
  })
})

describe('did:web issuers on local addresses (SSRF)', () => {
  let strict: TestHold
  let dev: TestHold
  let target: Local
  const key = Secp256k1Keypair.create()

  beforeAll(async () => {
    ;[strict, dev] = await Promise.all([
      startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } }),
      startHold({
        env: {
          HOLD_STATS_FLUSH_MS: '3600000',
          HOLD_DEV_ALLOW_LOCAL_DIDS: 'true',
        },
      }),
    ])
    // Answers every request with a valid DID document for did:web:localhost%3A<port>.
    target = await local(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(didDoc(`did:web:localhost%3A${target.port}`, await key))
    })
  })
  afterAll(async () => {
    await Promise.all([strict.stop(), dev.stop(), target.close()])
    await Promise.all([removeDir(strict.dataDir), removeDir(dev.dataDir)])
  })

  // Every way an issuer's did:web can name this machine. The resolver percent-decodes the host.
  const spellings = (port: number) => [
    `localhost%3A${port}`,
    `127.0.0.1%3A${port}`,
    `127.1%3A${port}`,
    `2130706433%3A${port}`,
    `0x7f000001%3A${port}`,
    `0177.0.0.1%3A${port}`,
    `0.0.0.0%3A${port}`,
    `%5B%3A%3A1%5D%3A${port}`,
    `%5B0%3A0%3A0%3A0%3A0%3A0%3A0%3A1%5D%3A${port}`,
    `%5B%3A%3Affff%3A127.0.0.1%5D%3A${port}`,
    `%5B%3A%3A%5D%3A${port}`,
  ]

  it('refuses every spelling of this machine with 401 BadJwtIssuer and never connects to it', async () => {
    for (const host of spellings(target.port)) {
      const res = await askPutUrl(
        strict,
        await token(`did:web:${host}`, strict.did, await key),
      )
      expectXrpcError(res, 401, 'BadJwtIssuer')
    }
    expect(target.connections()).toBe(0)
  })

  it('does reach it with HOLD_DEV_ALLOW_LOCAL_DIDS=true, where localhost over http works', async () => {
    // The same spellings from a hold with the switch on do connect: the count above would see
    // a connection. Only localhost is asked over http (the resolver's rule); the rest fail TLS.
    for (const host of spellings(target.port)) {
      const before = target.connections()
      await askPutUrl(dev, await token(`did:web:${host}`, dev.did, await key))
      expect(target.connections(), host).toBeGreaterThan(before)
    }
    const res = await askPutUrl(
      dev,
      await token(`did:web:localhost%3A${target.port}`, dev.did, await key),
    )
    expectAuthenticated(res)
  })

  it('checks a name’s addresses after DNS: https to a name that resolves to loopback is refused before connecting', async () => {
    const before = target.connections()
    const get = identityFetch({
      plcUrl: 'https://plc.directory',
      allowLocal: false,
      timeoutMs: 2000,
    })
    await expect(
      get(new URL(`https://localhost:${target.port}/.well-known/did.json`)),
    ).rejects.toThrow(/localhost resolves to (127\.0\.0\.1|::1), not a public/)
    await expect(
      get(new URL(`https://127.0.0.1:${target.port}/.well-known/did.json`)),
    ).rejects.toThrow(/not a public address/)
    expect(target.connections()).toBe(before)
  })
})

describe('DID documents are bounded: size (after decompression), time, no redirects', () => {
  let dev: TestHold
  const key = Secp256k1Keypair.create()
  const opened: Local[] = []

  beforeAll(async () => {
    dev = await startHold({
      env: {
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_DEV_ALLOW_LOCAL_DIDS: 'true',
      },
    })
  })
  afterAll(async () => {
    await dev.stop()
    await removeDir(dev.dataDir)
  })
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()))
  })

  /** A did:web:localhost%3A<port> of its own (the hold caches documents by DID). */
  const serve = async (
    handler: (req: IncomingMessage, res: ServerResponse, did: string) => void,
  ) => {
    const server: Local = await local((req, res) =>
      handler(req, res, `did:web:localhost%3A${server.port}`),
    )
    opened.push(server)
    return {
      ...server,
      did: `did:web:localhost%3A${server.port}`,
      url: new URL(`http://localhost:${server.port}/.well-known/did.json`),
    }
  }

  const send = (
    res: ServerResponse,
    body: Buffer | string,
    headers: Record<string, string> = {},
  ) => {
    res.writeHead(200, { 'content-type': 'application/json', ...headers })
    res.end(body)
  }

  const tryIssuer = async (did: string) =>
    askPutUrl(dev, await token(did, dev.did, await key))

  it('accepts a document just under 64 KiB, plain or gzipped', async () => {
    const plain = await serve(async (_req, res, did) =>
      send(res, didDoc(did, await key, MAX_DID_DOC_BYTES - 100)),
    )
    expectAuthenticated(await tryIssuer(plain.did))
    const gzipped = await serve(async (_req, res, did) =>
      send(res, gzipSync(didDoc(did, await key, MAX_DID_DOC_BYTES - 100)), {
        'content-encoding': 'gzip',
      }),
    )
    expectAuthenticated(await tryIssuer(gzipped.did))
  })

  it('refuses a valid document past 64 KiB, plain or gzipped, as 401 BadJwtIssuer', async () => {
    const plain = await serve(async (_req, res, did) =>
      send(res, didDoc(did, await key, MAX_DID_DOC_BYTES + 100)),
    )
    expectXrpcError(await tryIssuer(plain.did), 401, 'BadJwtIssuer')
    const gzipped = await serve(async (_req, res, did) =>
      send(res, gzipSync(didDoc(did, await key, MAX_DID_DOC_BYTES + 100)), {
        'content-encoding': 'gzip',
      }),
    )
    expectXrpcError(await tryIssuer(gzipped.did), 401, 'BadJwtIssuer')
  })

  it('refuses a gzip bomb (a valid document and 32 MiB of whitespace, in 32 KiB)', async () => {
    const bomb = await serve(async (_req, res, did) => {
      const body = gzipSync(didDoc(did, await key, 32 * 1024 * 1024), {
        level: 9,
      })
      expect(body.length).toBeLessThan(MAX_DID_DOC_BYTES)
      send(res, body, { 'content-encoding': 'gzip' })
    })
    expectXrpcError(await tryIssuer(bomb.did), 401, 'BadJwtIssuer')
  })

  it('stops reading an endless gzip stream at the cap and closes the connection', async () => {
    // Each member inflates to 16 MiB; gzip readers take members back to back, forever here.
    const member = gzipSync(Buffer.alloc(16 * 1024 * 1024, 0x20), { level: 9 })
    const hungUp: boolean[] = []
    const endless = await serve((_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      })
      const pump = () => {
        while (!res.destroyed && res.write(member));
      }
      res.on('drain', pump)
      res.on('close', () => hungUp.push(!res.writableFinished))
      pump()
    })
    expectXrpcError(await tryIssuer(endless.did), 401, 'BadJwtIssuer')
    const get = identityFetch({
      plcUrl: 'https://plc.directory',
      allowLocal: true,
      timeoutMs: 10_000,
    })
    await expect(get(endless.url)).rejects.toThrow(
      `larger than ${MAX_DID_DOC_BYTES} bytes`,
    )
    // Both readers hung up on the stream: the hold's and the direct one.
    await expect.poll(() => hungUp).toEqual([true, true])
  })

  it('gives up on a server that never answers, or never finishes, within the timeout', async () => {
    const get = identityFetch({
      plcUrl: 'https://plc.directory',
      allowLocal: true,
      timeoutMs: 300,
    })
    const silent = await serve(() => {})
    await expect(get(silent.url)).rejects.toThrow(/timeout|aborted/i)
    const unfinished = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{')
    })
    await expect(get(unfinished.url)).rejects.toThrow(/timeout|aborted/i)
  })

  it('does not follow a redirect to where the document is', async () => {
    const target = await serve(async (_req, res, did) =>
      send(res, didDoc(did, await key)),
    )
    const moved = await serve((_req, res) => {
      res.writeHead(302, { location: target.url.href })
      res.end()
    })
    expectXrpcError(await tryIssuer(moved.did), 401, 'BadJwtIssuer')
    expect(target.connections()).toBe(0)
  })
})

describe('PLC directory answers are bounded too', () => {
  let h: TestHold
  let plc: Local
  let elsewhere: Local
  const key = Secp256k1Keypair.create()
  const SMALL = 'did:plc:fetchsmall000000000000000'
  const BIG = 'did:plc:fetchbig00000000000000000'
  const MOVED = 'did:plc:fetchmoved0000000000000'

  beforeAll(async () => {
    plc = await local(async (req, res) => {
      const asked = decodeURIComponent((req.url ?? '/').slice(1))
      if (asked === MOVED) {
        res.writeHead(301, {
          location: `http://127.0.0.1:${elsewhere.port}${req.url}`,
        })
        return res.end()
      }
      const pad = asked === BIG ? 2 * MAX_DID_DOC_BYTES : 0
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      res.end(didDoc(asked, await key, pad))
    })
    elsewhere = await local(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      res.end(didDoc(MOVED, await key))
    })
    // The configured directory is asked as given, on 127.0.0.1, without the dev switch.
    h = await startHold({
      env: {
        HOLD_STATS_FLUSH_MS: '3600000',
        HOLD_PLC_URL: `http://127.0.0.1:${plc.port}`,
      },
    })
  })
  afterAll(async () => {
    await Promise.all([h.stop(), plc.close(), elsewhere.close()])
    await removeDir(h.dataDir)
  })

  it('resolves an issuer through the configured directory on 127.0.0.1', async () => {
    expectAuthenticated(
      await askPutUrl(h, await token(SMALL, h.did, await key)),
    )
  })

  it('refuses an issuer whose directory document is past 64 KiB', async () => {
    const res = await askPutUrl(h, await token(BIG, h.did, await key))
    expectXrpcError(res, 401, 'BadJwtIssuer')
  })

  it('does not follow a directory redirect', async () => {
    const res = await askPutUrl(h, await token(MOVED, h.did, await key))
    expectXrpcError(res, 401, 'BadJwtIssuer')
    expect(elsewhere.connections()).toBe(0)
  })
})
