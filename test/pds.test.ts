import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { cidForLex } from '@atproto/lex-cbor'
import { jsonToLex } from '@atproto/lex-json'
import {
  MemoryBlockstore,
  Repo,
  readCarWithRoot,
  verifyDiffCar,
  verifyProofs,
  verifyRecords,
  verifyRepoCar,
} from '@atproto/repo'
import { parseCid } from '@atproto/lex-data'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DidDocument } from '../src/identity.ts'
import {
  atprotoKeyFromDidDoc,
  getBytes,
  startHold,
  xrpc,
  type TestHold,
} from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CAPTAIN = 'io.atcr.hold.captain'
const CREW = 'io.atcr.hold.crew'

type DidDoc = DidDocument

type RecordView = { uri: string; cid: string; value: Record<string, unknown> }
type ListView = { records: RecordView[]; cursor?: string }

const crewRecord = (member: string) => ({
  $type: CREW,
  member,
  role: 'write',
  permissions: ['blob:read', 'blob:write'],
  addedAt: new Date().toISOString(),
})

const rkeyOf = (uri: string) => uri.split('/').pop() as string

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

  const fullRepo = async () => {
    const car = await getBytes(h.url, 'com.atproto.sync.getRepo', {
      did: h.did,
    })
    expect(car.status).toBe(200)
    return car.bytes
  }

  const listAll = async (
    collection: string,
    opts: { limit?: number; reverse?: boolean } = {},
  ): Promise<{ rkeys: string[]; pages: number }> => {
    const rkeys: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const res = await xrpc<ListView>(h.url, 'com.atproto.repo.listRecords', {
        repo: h.did,
        collection,
        limit: opts.limit,
        reverse: opts.reverse,
        cursor,
      })
      expect(res.status).toBe(200)
      if (opts.limit !== undefined) {
        expect(res.body.records.length).toBeLessThanOrEqual(opts.limit)
      }
      rkeys.push(...res.body.records.map((r) => rkeyOf(r.uri)))
      cursor = res.body.cursor
      pages++
      expect(pages).toBeLessThan(1000)
    } while (cursor)
    return { rkeys, pages }
  }

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
      const own = await xrpc(h.url, 'com.atproto.identity.resolveHandle', {
        handle: 'localhost',
      })
      expect(own).toMatchObject({ status: 200, body: { did: h.did } })
      const other = await xrpc(h.url, 'com.atproto.identity.resolveHandle', {
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
      const res = await xrpc(h.url, 'com.atproto.server.describeServer')
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
        }>(h.url, 'com.atproto.repo.describeRepo', {
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

  describe('records', () => {
    it('serves the captain record with its owner, flags and deployment time', async () => {
      const res = await xrpc<RecordView>(h.url, 'com.atproto.repo.getRecord', {
        repo: h.did,
        collection: CAPTAIN,
        rkey: 'self',
      })
      expect(res.status).toBe(200)
      expect(res.body.uri).toBe(`at://${h.did}/${CAPTAIN}/self`)
      expect(res.body.value).toEqual({
        $type: CAPTAIN,
        owner: OWNER,
        public: true,
        allowAllCrew: false,
        enableBlueskyPosts: false,
        deployedAt: expect.any(String),
      })
      const deployedAt = Date.parse(res.body.value.deployedAt as string)
      expect(Math.abs(Date.now() - deployedAt)).toBeLessThan(60_000)
      const cid = await cidForLex(
        jsonToLex(res.body.value as Parameters<typeof jsonToLex>[0]),
      )
      expect(res.body.cid).toBe(cid.toString())
    })

    it("serves the owner's crew record, keyed by the owner's DID, by DID and by handle", async () => {
      for (const repo of [h.did, 'localhost']) {
        const res = await xrpc<RecordView>(
          h.url,
          'com.atproto.repo.getRecord',
          { repo, collection: CREW, rkey: OWNER },
        )
        expect(res.status).toBe(200)
        expect(res.body.uri).toBe(`at://${h.did}/${CREW}/${OWNER}`)
        expect(res.body.value).toEqual({
          $type: CREW,
          member: OWNER,
          role: 'owner',
          permissions: ['blob:read', 'blob:write', 'crew:admin'],
          addedAt: expect.any(String),
        })
      }
    })

    it('answers getRecord with a matching cid and refuses a stale one', async () => {
      const current = await xrpc<RecordView>(
        h.url,
        'com.atproto.repo.getRecord',
        { repo: h.did, collection: CAPTAIN, rkey: 'self' },
      )
      const same = await xrpc<RecordView>(h.url, 'com.atproto.repo.getRecord', {
        repo: h.did,
        collection: CAPTAIN,
        rkey: 'self',
        cid: current.body.cid,
      })
      expect(same.status).toBe(200)
      const crew = await xrpc<RecordView>(h.url, 'com.atproto.repo.getRecord', {
        repo: h.did,
        collection: CREW,
        rkey: OWNER,
      })
      const stale = await xrpc(h.url, 'com.atproto.repo.getRecord', {
        repo: h.did,
        collection: CAPTAIN,
        rkey: 'self',
        cid: crew.body.cid,
      })
      expect(stale.status).toBe(404)
      expect(stale.body).toMatchObject({ error: 'RecordNotFound' })
    })

    it('lists records newest key first, oldest first with reverse, and pages through each record exactly once', async () => {
      const members = Array.from(
        { length: 36 },
        (_, i) => `did:plc:pagemember${String(i).padStart(4, '0')}`,
      )
      const commit = await h.hold.ctx.writer.putRecords(
        members.map((m) => ({
          collection: CREW,
          rkey: m,
          record: crewRecord(m),
        })),
      )
      expect(commit).not.toBeNull()
      const expected = [...members, OWNER].sort()
      expect(expected).toHaveLength(37)

      const all = await xrpc<ListView>(h.url, 'com.atproto.repo.listRecords', {
        repo: h.did,
        collection: CREW,
      })
      expect(all.status).toBe(200)
      const allRkeys = all.body.records.map((r) => rkeyOf(r.uri))
      expect(allRkeys).toEqual([...expected].reverse())
      expect(all.body.cursor).toBeUndefined()
      for (const r of all.body.records) {
        expect(r.uri).toBe(`at://${h.did}/${CREW}/${r.value.member as string}`)
      }

      const desc = await listAll(CREW, { limit: 7 })
      expect(desc.rkeys).toEqual([...expected].reverse())
      expect(desc.pages).toBe(6)

      const asc = await listAll(CREW, { limit: 7, reverse: true })
      expect(asc.rkeys).toEqual(expected)

      const one = await listAll(CREW, { limit: 1, reverse: true })
      expect(one.rkeys).toEqual(expected)

      const empty = await xrpc<ListView>(
        h.url,
        'com.atproto.repo.listRecords',
        {
          repo: h.did,
          collection: 'io.atcr.hold.nothing',
        },
      )
      expect(empty.status).toBe(200)
      expect(empty.body).toEqual({ records: [] })
    })
  })

  describe('sync', () => {
    it('exports the repo as a CAR that verifies against the key in did.json and holds every listed record', async () => {
      const res = await fetch(
        `${h.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(h.did)}`,
      )
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car')
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      const bytes = new Uint8Array(await res.arrayBuffer())
      const verified = await verifyRepoCar(bytes, h.did, signingKey)
      const crew = await listAll(CREW, { limit: 100 })
      const inCar = verified.creates.map((c) => `${c.collection}/${c.rkey}`)
      expect(inCar.sort()).toEqual(
        [`${CAPTAIN}/self`, ...crew.rkeys.map((k) => `${CREW}/${k}`)].sort(),
      )
      const latest = await xrpc<{ cid: string; rev: string }>(
        h.url,
        'com.atproto.sync.getLatestCommit',
        { did: h.did },
      )
      const { root } = await readCarWithRoot(bytes)
      expect(latest.status).toBe(200)
      expect(latest.body.cid).toBe(root.toString())
      expect(latest.body.rev).toBe(verified.commit.rev)
    })

    it('refuses a CAR verification against a key other than the published one', async () => {
      const other = await Secp256k1Keypair.create()
      await expect(
        verifyRepoCar(await fullRepo(), h.did, other.did()),
      ).rejects.toThrow(/signature/i)
    })

    it('serves a record proof that verifies and yields the record', async () => {
      const res = await getBytes(h.url, 'com.atproto.sync.getRecord', {
        did: h.did,
        collection: CAPTAIN,
        rkey: 'self',
      })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car')
      const records = await verifyRecords(res.bytes, h.did, signingKey)
      const captain = records.find(
        (r) => r.collection === CAPTAIN && r.rkey === 'self',
      )
      expect(captain?.record).toMatchObject({ $type: CAPTAIN, owner: OWNER })
      const view = await xrpc<RecordView>(h.url, 'com.atproto.repo.getRecord', {
        repo: h.did,
        collection: CAPTAIN,
        rkey: 'self',
      })
      const proved = await verifyProofs(
        res.bytes,
        [{ collection: CAPTAIN, rkey: 'self', cid: parseCid(view.body.cid) }],
        h.did,
        signingKey,
      )
      expect(proved.unverified).toEqual([])
      expect(proved.verified).toHaveLength(1)
    })

    it('serves getRepo?since=<rev> as a diff that verifies against the earlier repo and carries exactly the later writes', async () => {
      const before = await fullRepo()
      const { root, blocks } = await readCarWithRoot(before)
      const previous = await Repo.load(new MemoryBlockstore(blocks), root)
      const sinceRev = previous.commit.rev
      const { writer } = h.hold.ctx
      const added = ['did:plc:sincemember0001', 'did:plc:sincemember0002']
      await writer.putRecords(
        added.map((m) => ({
          collection: CREW,
          rkey: m,
          record: crewRecord(m),
        })),
      )
      await writer.putRecords([
        {
          collection: CREW,
          rkey: 'did:plc:sincemember0001',
          record: { ...crewRecord('did:plc:sincemember0001'), role: 'admin' },
        },
      ])
      await writer.deleteRecords([
        { collection: CREW, rkey: 'did:plc:pagemember0000' },
      ])

      const diff = await getBytes(h.url, 'com.atproto.sync.getRepo', {
        did: h.did,
        since: sinceRev,
      })
      expect(diff.status).toBe(200)
      expect(diff.bytes.byteLength).toBeLessThan(before.byteLength)
      const verified = await verifyDiffCar(
        previous,
        diff.bytes,
        h.did,
        signingKey,
      )
      const writes = verified.writes
        .map((w) => `${w.action} ${w.collection}/${w.rkey}`)
        .sort()
      expect(writes).toEqual([
        `create ${CREW}/did:plc:sincemember0001`,
        `create ${CREW}/did:plc:sincemember0002`,
        `delete ${CREW}/did:plc:pagemember0000`,
      ])
      const latest = await xrpc<{ cid: string; rev: string }>(
        h.url,
        'com.atproto.sync.getLatestCommit',
        { did: h.did },
      )
      expect(verified.commit.rev).toBe(latest.body.rev)
      expect(verified.commit.cid.toString()).toBe(latest.body.cid)
      expect(latest.body.rev > sinceRev).toBe(true)

      const updated = await xrpc<RecordView>(
        h.url,
        'com.atproto.repo.getRecord',
        { repo: h.did, collection: CREW, rkey: 'did:plc:sincemember0001' },
      )
      expect(updated.body.value.role).toBe('admin')
    })

    it('serves getRepo since the current rev as a diff with no writes', async () => {
      const before = await fullRepo()
      const { root, blocks } = await readCarWithRoot(before)
      const current = await Repo.load(new MemoryBlockstore(blocks), root)
      const diff = await getBytes(h.url, 'com.atproto.sync.getRepo', {
        did: h.did,
        since: current.commit.rev,
      })
      expect(diff.status).toBe(200)
      const verified = await verifyDiffCar(
        current,
        diff.bytes,
        h.did,
        signingKey,
      )
      expect(verified.writes).toEqual([])
    })

    it('reports the latest commit, the repo status and the one repo it hosts', async () => {
      const car = await fullRepo()
      const { root } = await readCarWithRoot(car)
      const verified = await verifyRepoCar(car, h.did, signingKey)
      const rev = verified.commit.rev

      const latest = await xrpc(h.url, 'com.atproto.sync.getLatestCommit', {
        did: h.did,
      })
      expect(latest).toMatchObject({
        status: 200,
        body: { cid: root.toString(), rev },
      })

      const status = await xrpc(h.url, 'com.atproto.sync.getRepoStatus', {
        did: h.did,
      })
      expect(status.status).toBe(200)
      expect(status.body).toEqual({ did: h.did, active: true, rev })

      const repos = await xrpc<{ repos: unknown[]; cursor?: string }>(
        h.url,
        'com.atproto.sync.listRepos',
      )
      expect(repos.status).toBe(200)
      expect(repos.body.repos).toEqual([
        { did: h.did, head: root.toString(), rev, active: true },
      ])
      expect(repos.body.cursor).toEqual(expect.any(String))

      const next = await xrpc(h.url, 'com.atproto.sync.listRepos', {
        cursor: repos.body.cursor,
      })
      expect(next.status).toBe(200)
      expect(next.body).toEqual({ repos: [] })
    })
  })

  describe('bad requests', () => {
    const q = (nsid: string, query: string) => `/xrpc/${nsid}?${query}`
    const getRecord = 'com.atproto.repo.getRecord'
    const listRecords = 'com.atproto.repo.listRecords'
    const getRepo = 'com.atproto.sync.getRepo'
    const syncGetRecord = 'com.atproto.sync.getRecord'
    const captain = `repo={did}&collection=${CAPTAIN}&rkey=self`
    const list = `repo={did}&collection=${CREW}`
    const cases: {
      name: string
      path: string
      method?: string
      status: number
      error: string
    }[] = [
      {
        name: 'an unknown method',
        path: '/xrpc/com.example.doesNotExist',
        status: 501,
        error: 'MethodNotImplemented',
      },
      {
        name: 'an unknown method under the hold namespace',
        path: '/xrpc/io.atcr.hold.deleteEverything?did={did}',
        status: 501,
        error: 'MethodNotImplemented',
      },
      {
        name: 'getRecord for another DID',
        path: q(
          getRecord,
          `repo=did:plc:someoneelse&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRecord for another handle',
        path: q(
          getRecord,
          `repo=alice.example.com&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRecord for a record that does not exist',
        path: q(getRecord, `repo={did}&collection=${CREW}&rkey=nobody`),
        status: 404,
        error: 'RecordNotFound',
      },
      {
        name: 'getRecord in a collection that does not exist',
        path: q(
          getRecord,
          'repo={did}&collection=app.bsky.feed.post&rkey=self',
        ),
        status: 404,
        error: 'RecordNotFound',
      },
      {
        name: 'getRecord without repo',
        path: q(getRecord, `collection=${CAPTAIN}&rkey=self`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a repo that is neither DID nor handle',
        path: q(
          getRecord,
          `repo=not%20a%20repo&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with an invalid collection',
        path: q(getRecord, 'repo={did}&collection=not-an-nsid&rkey=self'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with an invalid rkey',
        path: q(getRecord, `repo={did}&collection=${CAPTAIN}&rkey=a%2Fb`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with the rkey ".."',
        path: q(getRecord, `repo={did}&collection=${CAPTAIN}&rkey=..`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with an rkey over 512 characters',
        path: q(
          getRecord,
          `repo={did}&collection=${CAPTAIN}&rkey=${'k'.repeat(513)}`,
        ),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a cid that is not a CID',
        path: q(getRecord, `${captain}&cid=not!a!cid`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a repeated parameter',
        path: q(getRecord, `${captain}&rkey=self`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a control character in a parameter',
        path: q(getRecord, `repo={did}&collection=${CAPTAIN}%00&rkey=self`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRecord with a query string over 8192 characters',
        path: q(getRecord, `${captain}&pad=${'a'.repeat(8200)}`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'a POST to getRecord',
        path: q(getRecord, captain),
        method: 'POST',
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'a DELETE to getRepo',
        path: q(getRepo, 'did={did}'),
        method: 'DELETE',
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=0',
        path: q(listRecords, `${list}&limit=0`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=101',
        path: q(listRecords, `${list}&limit=101`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=abc',
        path: q(listRecords, `${list}&limit=abc`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with limit=1.5',
        path: q(listRecords, `${list}&limit=1.5`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with reverse=maybe',
        path: q(listRecords, `${list}&reverse=maybe`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords with a cursor this hold never issued',
        path: q(listRecords, `${list}&cursor=${encodeURIComponent('a b/c')}`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords without a collection',
        path: q(listRecords, 'repo={did}'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'listRecords for another DID',
        path: q(listRecords, `repo=did:plc:someoneelse&collection=${CREW}`),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'describeRepo for another DID',
        path: q(
          'com.atproto.repo.describeRepo',
          'repo=did:web:elsewhere.example.com',
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRepo for another DID',
        path: q(getRepo, 'did=did:plc:someoneelse'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRepo with a did that is not a DID',
        path: q(getRepo, 'did=localhost'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRepo with since=notatid',
        path: q(getRepo, 'did={did}&since=notatid'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getRepo with a repeated did',
        path: q(getRepo, 'did={did}&did={did}'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'sync.getRecord for another DID',
        path: q(
          syncGetRecord,
          `did=did:plc:someoneelse&collection=${CAPTAIN}&rkey=self`,
        ),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'sync.getRecord without rkey',
        path: q(syncGetRecord, `did={did}&collection=${CAPTAIN}`),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getLatestCommit without did',
        path: '/xrpc/com.atproto.sync.getLatestCommit',
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'getLatestCommit for another DID',
        path: q('com.atproto.sync.getLatestCommit', 'did=did:plc:someoneelse'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'getRepoStatus for another DID',
        path: q('com.atproto.sync.getRepoStatus', 'did=did:plc:someoneelse'),
        status: 404,
        error: 'RepoNotFound',
      },
      {
        name: 'listRepos with limit=0',
        path: q('com.atproto.sync.listRepos', 'limit=0'),
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'resolveHandle without a handle',
        path: '/xrpc/com.atproto.identity.resolveHandle',
        status: 400,
        error: 'InvalidRequest',
      },
      {
        name: 'resolveHandle with something that is not a handle',
        path: q(
          'com.atproto.identity.resolveHandle',
          'handle=not%20a%20handle',
        ),
        status: 400,
        error: 'InvalidRequest',
      },
    ]

    it.each(cases)(
      '$name answers $status $error',
      async ({ path, method, status, error }) => {
        const url = `${h.url}${path.replaceAll('{did}', encodeURIComponent(h.did))}`
        const res = await fetch(url, { method: method ?? 'GET' })
        expect(res.headers.get('content-type')).toContain('application/json')
        const body = (await res.json()) as { error: unknown; message: unknown }
        expect(res.status).not.toBe(500)
        expect({ status: res.status, error: body.error }).toEqual({
          status,
          error,
        })
        expect(body.message).toEqual(expect.any(String))
        expect((body.message as string).length).toBeGreaterThan(0)
      },
    )
  })
})
