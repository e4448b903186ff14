import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { ids } from '../src/ids.ts'

/**
 * A small PLC-compatible directory for tests (GET /<did> answers the DID document), holding
 * real secp256k1 keys, so holds verify real service tokens exactly as in production.
 */
const keys = new Map<string, Secp256k1Keypair>()
/** Handles the directory's documents name (alsoKnownAs), for the DIDs given one. */
const handles = new Map<string, string>()

/** Makes the test directory's document of `did` name `handle` (at://handle). */
export const setHandle = (did: string, handle: string): void => {
  handles.set(did, handle)
}

/** The DID document a PLC directory serves for `did`: its atproto key, and its handle when set. */
export const plcDocument = (did: string, key: { did(): string }) => ({
  '@context': ['https://www.w3.org/ns/did/v1'],
  id: did,
  alsoKnownAs: handles.has(did) ? [`at://${handles.get(did)}`] : [],
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
let plc: Promise<{ url: string; server: Server }> | undefined

/** The test directory's URL, started on first use (one per test process). */
export const testPlcUrl = async (): Promise<string> => {
  plc ??= new Promise((resolve) => {
    const server = createServer((req, res) => {
      const did = decodeURIComponent((req.url ?? '/').slice(1))
      const key = keys.get(did)
      if (!key) {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ message: `DID not registered: ${did}` }))
        return
      }
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      res.end(JSON.stringify(plcDocument(did, key)))
    })
    server.listen(0, '127.0.0.1', () => {
      server.unref()
      const { port } = server.address() as AddressInfo
      resolve({ url: `http://127.0.0.1:${port}`, server })
    })
  })
  return (await plc).url
}

/** The keypair of a test identity, registered in the test directory on first use. */
export const identity = async (did: string): Promise<Secp256k1Keypair> => {
  let key = keys.get(did)
  if (!key) {
    key = await Secp256k1Keypair.create({ exportable: true })
    keys.set(did, key)
  }
  return key
}

/** Gives did a new key in the directory (the old one stops verifying after a refresh). */
export const rotateKey = async (did: string): Promise<Secp256k1Keypair> => {
  const key = await Secp256k1Keypair.create({ exportable: true })
  keys.set(did, key)
  return key
}

/** Removes did from the directory: it no longer resolves. */
export const forget = (did: string): void => {
  keys.delete(did)
}

/** A real service JWT from iss to aud (the hold DID), signed with iss's current key. */
export const serviceToken = async (opts: {
  iss: string
  aud: string
  lxm?: string | null
  exp?: number
  keypair?: Secp256k1Keypair
}): Promise<string> =>
  createServiceJwt({
    iss: opts.iss,
    aud: opts.aud,
    lxm: opts.lxm === undefined ? ids.SyncGetBlob : opts.lxm,
    exp: opts.exp,
    keypair: opts.keypair ?? (await identity(opts.iss)),
  })

export const bearer = async (
  opts: Parameters<typeof serviceToken>[0],
): Promise<{ authorization: string }> => ({
  authorization: `Bearer ${await serviceToken(opts)}`,
})
