import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { ConfigError, type ServerConfig } from './config.ts'
import type { Logger } from './logger.ts'

const KEY_FILE = 'signing-key.hex'
const URL_SECRET_FILE = 'blob-url-secret.hex'

/**
 * The hold's secp256k1 signing key: HOLD_SIGNING_KEY when given, else the key kept in the data
 * dir, created (mode 0600) on first start.
 */
export const loadSigningKey = async (
  dataDir: string,
  hex: string | undefined,
): Promise<Secp256k1Keypair> => {
  if (hex) return Secp256k1Keypair.import(hex, { exportable: true })
  const stored = await readSecretFile(dataDir, KEY_FILE, async () => {
    const key = await Secp256k1Keypair.create({ exportable: true })
    return Buffer.from(await key.export()).toString('hex')
  })
  return Secp256k1Keypair.import(stored, { exportable: true })
}

/** The HMAC secret that signs blob URLs, created on first start and kept in the data dir. */
export const loadUrlSecret = async (dataDir: string): Promise<Buffer> => {
  const hex = await readSecretFile(dataDir, URL_SECRET_FILE, async () =>
    randomBytes(32).toString('hex'),
  )
  return Buffer.from(hex, 'hex')
}

const readSecretFile = async (
  dataDir: string,
  name: string,
  create: () => Promise<string>,
): Promise<string> => {
  const path = join(dataDir, name)
  try {
    const value = (await readFile(path, 'utf8')).trim()
    if (!/^[0-9a-f]{64}$/.test(value)) {
      throw new Error(`${path} does not hold 64 hex characters`)
    }
    return value
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true })
  const value = await create()
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, value + '\n', { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, path)
  return value
}

export type DidDocument = {
  '@context': string[]
  id: string
  alsoKnownAs: string[]
  verificationMethod: {
    id: string
    type: string
    controller: string
    publicKeyMultibase: string
  }[]
  service: { id: string; type: string; serviceEndpoint: string }[]
}

export const didDocument = (
  cfg: ServerConfig,
  keypair: Secp256k1Keypair,
): DidDocument => ({
  '@context': [
    'https://www.w3.org/ns/did/v1',
    'https://w3id.org/security/multikey/v1',
    'https://w3id.org/security/suites/secp256k1-2019/v1',
  ],
  id: cfg.did,
  alsoKnownAs: [`at://${cfg.handle}`],
  verificationMethod: [
    {
      id: `${cfg.did}#atproto`,
      type: 'Multikey',
      controller: cfg.did,
      publicKeyMultibase: keypair.did().slice('did:key:'.length),
    },
  ],
  service: [
    {
      id: '#atproto_pds',
      type: 'AtprotoPersonalDataServer',
      serviceEndpoint: cfg.publicUrl,
    },
    {
      id: '#atcr_hold',
      type: 'AtcrHoldService',
      serviceEndpoint: cfg.publicUrl,
    },
  ],
})

/** Hosts only this machine reaches: a did:web on one names nothing anyone else can resolve. */
export const isLoopbackHost = (hostname: string): boolean =>
  hostname === 'localhost' ||
  hostname.endsWith('.localhost') ||
  /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)

/**
 * Checks the hold's public identity before the repo is opened. A deployed hold (Fly, or
 * NODE_ENV=production) without HOLD_PUBLIC_URL would bind a new repo to did:web:localhost for
 * good, so that first start is refused; a data dir already bound to it starts with a warning,
 * as does a plain-http URL for a host others reach (did:web resolves those over https only).
 */
export const checkIdentity = (
  cfg: ServerConfig,
  opts: { hasRepo: boolean; log: Logger },
): void => {
  const local = isLoopbackHost(cfg.handle)
  if (local && cfg.deployedBy && cfg.publicUrlFrom === undefined) {
    if (!opts.hasRepo) {
      throw new ConfigError(
        `HOLD_PUBLIC_URL is not set, so this hold would be ${cfg.did} for good, but it runs deployed (${cfg.deployedBy}); set HOLD_PUBLIC_URL to the https URL clients reach it at, e.g. https://hold.example.com`,
      )
    }
    opts.log.warn(
      { did: cfg.did, deployedBy: cfg.deployedBy },
      `this hold runs deployed (${cfg.deployedBy}) as ${cfg.did}, which no one else can resolve; set HOLD_PUBLIC_URL, with HOLD_REBIND_FROM=${cfg.did} to move its data to the new DID`,
    )
  }
  if (!local && cfg.publicUrl.startsWith('http:')) {
    opts.log.warn(
      { url: cfg.publicUrl },
      `HOLD_PUBLIC_URL is plain http for ${cfg.handle}: did:web resolves it over https only, and tokens and signed URLs would cross the network unencrypted; use https://${cfg.handle}`,
    )
  }
}
