/**
 * A real atproto network in this process: @atproto/pds and @did-plc/server (an in-memory PLC),
 * the two parts of @atproto/dev-env's network an AppView's users need, without its AppView.
 * Accounts are real PDS accounts; their tokens come from com.atproto.server.getServiceAuth.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { PDS } from '@atproto/pds'
import * as plc from '@did-plc/server'
import { freePort, tempDir } from '../_shared.ts'

export type Network = {
  plcUrl: string
  pdsUrl: string
  close: () => Promise<void>
}

export type Account = {
  did: `did:plc:${string}`
  handle: string
  accessJwt: string
}

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')

export const startNetwork = async (): Promise<Network> => {
  const plcServer = plc.PlcServer.create({ db: plc.Database.mock(), port: 0 })
  const plcHttp = await plcServer.start()
  const plcUrl = `http://localhost:${(plcHttp.address() as { port: number }).port}`

  const dir = await tempDir('atcr-hold-interop-')
  // The PDS opens its SQLite files in dataDirectory but does not create it.
  await mkdir(join(dir, 'data'))
  // Fixed before start: the port is part of the PDS's public URL.
  const port = await freePort()
  const rotation = await Secp256k1Keypair.create({ exportable: true })
  // An explicit environment: the PDS reads no process variables.
  const pds = await PDS.fromEnv({
    devMode: true,
    port,
    hostname: 'localhost',
    dataDirectory: join(dir, 'data'),
    blobstoreDiskLocation: join(dir, 'blobs'),
    recoveryDidKey: (await Secp256k1Keypair.create()).did(),
    adminPassword: 'interop-admin',
    jwtSecret: 'interop-jwt-secret',
    serviceHandleDomains: ['.test'],
    didPlcUrl: plcUrl,
    bskyAppViewUrl: 'https://appview.invalid',
    bskyAppViewDid: 'did:example:invalid',
    modServiceUrl: 'https://moderator.invalid',
    modServiceDid: 'did:example:invalid',
    plcRotationKeyK256PrivateKeyHex: hex(await rotation.export()),
    inviteRequired: false,
    disableSsrfProtection: true,
  })
  await pds.start()
  return {
    plcUrl,
    pdsUrl: `http://localhost:${port}`,
    close: async () => {
      await pds.destroy()
      await plcServer.destroy()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

const pdsCall = async <T>(
  pdsUrl: string,
  nsid: string,
  init: { params?: Record<string, string>; body?: unknown; jwt?: string },
): Promise<T> => {
  const url = new URL(`/xrpc/${nsid}`, pdsUrl)
  for (const [k, v] of Object.entries(init.params ?? {})) {
    url.searchParams.set(k, v)
  }
  const res = await fetch(url, {
    method: init.body ? 'POST' : 'GET',
    headers: {
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.jwt ? { authorization: `Bearer ${init.jwt}` } : {}),
    },
    body: init.body ? JSON.stringify(init.body) : undefined,
  })
  const body = (await res.json()) as T
  if (!res.ok) {
    throw new Error(`${nsid}: ${res.status} ${JSON.stringify(body)}`)
  }
  return body
}

export const createAccount = (net: Network, name: string): Promise<Account> =>
  pdsCall<Account>(net.pdsUrl, 'com.atproto.server.createAccount', {
    body: {
      handle: `${name}.test`,
      email: `${name}@interop.test`,
      password: `${name}-password`,
    },
  })

export type TokenRequest = { aud: string; lxm: string; exp: number }

/**
 * A HoldClient token function backed by the account's PDS session, as an AppView holding an
 * app-password session would write it; it logs what it asked for.
 */
export const pdsTokens = (net: Network, account: Account) => {
  const asked: TokenRequest[] = []
  const getToken = async (
    aud: string,
    lxm: string,
    { exp }: { exp: number },
  ): Promise<string> => {
    asked.push({ aud, lxm, exp })
    const { token } = await pdsCall<{ token: string }>(
      net.pdsUrl,
      'com.atproto.server.getServiceAuth',
      { params: { aud, lxm, exp: String(exp) }, jwt: account.accessJwt },
    )
    return token
  }
  return { getToken, asked }
}
