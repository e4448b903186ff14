import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import type { ServerConfig } from './config.ts'

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
