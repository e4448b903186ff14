import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { DidDocument } from '../src/identity.ts'
import {
  atprotoKeyFromDidDoc,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CAPTAIN = ids.HoldCaptain
const CREW = ids.HoldCrew

type DidDoc = DidDocument

describe('the embedded PDS', () => {
  let h: TestHold
  let doc: DidDoc
  let signingKey: string

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_OWNER_DID: OWNER } })
    doc = (await (
      await fetch(`${h.url}/.well-known/did.json`)
    ).json()) as DidDoc
    signingKey = atprotoKeyFromDidDoc(doc)
  })
  afterAll(() => h.stop())

  describe('identity', () => {
    it('publishes a did:web document with an #atproto Multikey, the host as handle and the hold service', async () => {
      const res = await fetch(`${h.url}/.well-known/did.json`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toContain('application/json')
      expect(h.did).toBe(`did:web:localhost%3A${h.port}`)
      expect(doc.id).toBe(h.did)
      expect(doc['@context']).toContain('https://www.w3.org/ns/did/v1')
      expect(doc.alsoKnownAs).toEqual(['at://localhost'])
      expect(doc.verificationMethod).toEqual([
        {
          id: `${h.did}#atproto`,
          type: 'Multikey',
          controller: h.did,
          publicKeyMultibase: expect.stringMatching(/^z[1-9A-HJ-NP-Za-km-z]+$/),
        },
      ])
      const stored = (
        await readFile(join(h.dataDir, 'signing-key.hex'), 'utf8')
      ).trim()
      expect(signingKey).toBe((await Secp256k1Keypair.import(stored)).did())
      expect(doc.service).toContainEqual({
        id: '#atproto_pds',
        type: 'AtprotoPersonalDataServer',
        serviceEndpoint: h.url,
      })
      expect(doc.service.length).toBeGreaterThanOrEqual(2)
      for (const service of doc.service) {
        expect(service.serviceEndpoint).toBe(h.url)
      }
    })

    it('answers /.well-known/atproto-did with the DID as plain text', async () => {
      const res = await fetch(`${h.url}/.well-known/atproto-did`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toContain('text/plain')
      expect(await res.text()).toBe(h.did)
    })

    it('resolves its own handle to its DID and no other handle', async () => {
      const own = await xrpc(h.url, ids.IdentityResolveHandle, {
        handle: 'localhost',
      })
      expect(own).toMatchObject({ status: 200, body: { did: h.did } })
      const other = await xrpc(h.url, ids.IdentityResolveHandle, {
        handle: 'alice.example.com',
      })
      expect(other.status).toBe(404)
      expect(other.body).toMatchObject({ error: 'HandleNotFound' })
    })
  })

  describe('server and repo descriptions', () => {
    it('reports health with the version, touching the database', async () => {
      const res = await xrpc(h.url, '_health')
      expect(res.status).toBe(200)
      expect(res.body).toEqual({ version: 'test' })
    })

    it('describes the server with its DID and no account sign-up', async () => {
      const res = await xrpc(h.url, ids.ServerDescribeServer)
      expect(res.status).toBe(200)
      expect(res.body).toMatchObject({
        did: h.did,
        availableUserDomains: [],
      })
    })

    it.each(['did', 'handle'] as const)(
      'describes its repo when asked by %s',
      async (by) => {
        const res = await xrpc<{
          handle: string
          did: string
          didDoc: DidDoc
          collections: string[]
          handleIsCorrect: boolean
        }>(h.url, ids.RepoDescribeRepo, {
          repo: by === 'did' ? h.did : 'localhost',
        })
        expect(res.status).toBe(200)
        expect(res.body.did).toBe(h.did)
        expect(res.body.handle).toBe('localhost')
        expect(res.body.handleIsCorrect).toBe(true)
        expect(res.body.didDoc).toEqual(doc)
        expect(res.body.collections).toEqual(
          expect.arrayContaining([CAPTAIN, CREW]),
        )
      },
    )
  })
})
