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
} from '@atproto/repo'
import { parseCid } from '@atproto/lex-data'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { publishedKey, repoCar, verifiedRepo } from './_repo.ts'
import { getBytes, startHold, xrpc, type TestHold } from './_util.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CAPTAIN = ids.HoldCaptain
const CREW = ids.HoldCrew

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
  let signingKey: string

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_OWNER_DID: OWNER } })
    signingKey = await publishedKey(h.url)
  })
  afterAll(() => h.stop())

  const fullRepo = () => repoCar(h.url, h.did)

  const listAll = async (
    collection: string,
    opts: { limit?: number; reverse?: boolean } = {},
  ): Promise<{ rkeys: string[]; pages: number }> => {
    const rkeys: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const res = await xrpc<ListView>(h.url, ids.RepoListRecords, {
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
  describe('records', () => {
    it('serves the captain record with its owner, flags and deployment time', async () => {
      const res = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
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
        const res = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
          repo,
          collection: CREW,
          rkey: OWNER,
        })
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
      const current = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
        repo: h.did,
        collection: CAPTAIN,
        rkey: 'self',
      })
      const same = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
        repo: h.did,
        collection: CAPTAIN,
        rkey: 'self',
        cid: current.body.cid,
      })
      expect(same.status).toBe(200)
      const crew = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
        repo: h.did,
        collection: CREW,
        rkey: OWNER,
      })
      const stale = await xrpc(h.url, ids.RepoGetRecord, {
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

      const all = await xrpc<ListView>(h.url, ids.RepoListRecords, {
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

      const empty = await xrpc<ListView>(h.url, ids.RepoListRecords, {
        repo: h.did,
        collection: 'io.atcr.hold.nothing',
      })
      expect(empty.status).toBe(200)
      expect(empty.body).toEqual({ records: [] })
    })
  })

  describe('sync', () => {
    it('exports the repo as a CAR that verifies against the key in did.json and holds every listed record', async () => {
      const res = await fetch(
        `${h.url}/xrpc/${ids.SyncGetRepo}?did=${encodeURIComponent(h.did)}`,
      )
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car')
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      const bytes = new Uint8Array(await res.arrayBuffer())
      const verified = await verifiedRepo(h.url, h.did, { car: bytes })
      const crew = await listAll(CREW, { limit: 100 })
      const inCar = verified.creates.map((c) => `${c.collection}/${c.rkey}`)
      expect(inCar.sort()).toEqual(
        [`${CAPTAIN}/self`, ...crew.rkeys.map((k) => `${CREW}/${k}`)].sort(),
      )
      const latest = await xrpc<{ cid: string; rev: string }>(
        h.url,
        ids.SyncGetLatestCommit,
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
        verifiedRepo(h.url, h.did, { key: other.did() }),
      ).rejects.toThrow(/signature/i)
    })

    it('serves a record proof that verifies and yields the record', async () => {
      const res = await getBytes(h.url, ids.SyncGetRecord, {
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
      const view = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
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

      const diff = await getBytes(h.url, ids.SyncGetRepo, {
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
        ids.SyncGetLatestCommit,
        { did: h.did },
      )
      expect(verified.commit.rev).toBe(latest.body.rev)
      expect(verified.commit.cid.toString()).toBe(latest.body.cid)
      expect(latest.body.rev > sinceRev).toBe(true)

      const updated = await xrpc<RecordView>(h.url, ids.RepoGetRecord, {
        repo: h.did,
        collection: CREW,
        rkey: 'did:plc:sincemember0001',
      })
      expect(updated.body.value.role).toBe('admin')
    })

    it('serves getRepo since the current rev as a diff with no writes', async () => {
      const before = await fullRepo()
      const { root, blocks } = await readCarWithRoot(before)
      const current = await Repo.load(new MemoryBlockstore(blocks), root)
      const diff = await getBytes(h.url, ids.SyncGetRepo, {
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
      const verified = await verifiedRepo(h.url, h.did, { car })
      const rev = verified.commit.rev

      const latest = await xrpc(h.url, ids.SyncGetLatestCommit, {
        did: h.did,
      })
      expect(latest).toMatchObject({
        status: 200,
        body: { cid: root.toString(), rev },
      })

      const status = await xrpc(h.url, ids.SyncGetRepoStatus, {
        did: h.did,
      })
      expect(status.status).toBe(200)
      expect(status.body).toEqual({ did: h.did, active: true, rev })

      const repos = await xrpc<{ repos: unknown[]; cursor?: string }>(
        h.url,
        ids.SyncListRepos,
      )
      expect(repos.status).toBe(200)
      expect(repos.body.repos).toEqual([
        { did: h.did, head: root.toString(), rev, active: true },
      ])
      expect(repos.body.cursor).toEqual(expect.any(String))

      const next = await xrpc(h.url, ids.SyncListRepos, {
        cursor: repos.body.cursor,
      })
      expect(next.status).toBe(200)
      expect(next.body).toEqual({ repos: [] })
    })
  })
})
