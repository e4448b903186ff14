import { cidForLex } from '@atproto/lex-cbor'
import type { LexMap } from '@atproto/lex-data'
import {
  MemoryBlockstore,
  Repo,
  readCarWithRoot,
  verifyDiffCar,
  verifyRecords,
} from '@atproto/repo'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { Commit } from '../src/repo/commit.ts'
import type { CommitEvent, RecordPut } from '../src/repo/writer.ts'
import { getBytes, startHold, xrpc, type TestHold } from './_util.ts'
import { publishedKey, repoCar, verifiedRepo } from './_repo.ts'

const OWNER = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CREW = ids.HoldCrew
const CAPTAIN = ids.HoldCaptain
const ADDED_AT = '2026-01-02T03:04:05.000Z'

type RecordView = { uri: string; cid: string; value: Record<string, unknown> }

const crewRecord = (member: string, extra: Record<string, string> = {}) => ({
  $type: CREW,
  member,
  role: 'write',
  permissions: ['blob:read'],
  addedAt: ADDED_AT,
  ...extra,
})

const crewPut = (rkey: string, member = rkey): RecordPut => ({
  collection: CREW,
  rkey,
  record: crewRecord(member),
})

describe('the single repo writer', () => {
  let h: TestHold
  let signingKey: string

  beforeEach(async () => {
    h = await startHold({ env: { HOLD_OWNER_DID: OWNER } })
    signingKey = await publishedKey(h.url)
  })
  afterEach(() => h.stop())

  const head = async () => {
    const res = await xrpc<{ cid: string; rev: string }>(
      h.url,
      ids.SyncGetLatestCommit,
      { did: h.did },
    )
    expect(res.status).toBe(200)
    return res.body
  }

  const fullRepo = () => repoCar(h.url, h.did)

  const getRecord = (collection: string, rkey: string) =>
    xrpc<RecordView>(h.url, ids.RepoGetRecord, {
      repo: h.did,
      collection,
      rkey,
    })

  const commitsSeen = () => {
    const events: CommitEvent[] = []
    h.hold.ctx.writer.onCommit((evt) => events.push(evt))
    return events
  }

  it('lands 50 concurrent putRecords calls, one commit each, on one linear history', async () => {
    const { writer } = h.hold.ctx
    const events = commitsSeen()
    const before = await head()
    const members = Array.from(
      { length: 50 },
      (_, i) => `did:plc:concurrent${String(i).padStart(4, '0')}`,
    )

    const commits = await Promise.all(
      members.map((m) => writer.putRecords([crewPut(m)])),
    )

    expect(commits.every((c) => c !== null)).toBe(true)
    const chain = commits as Commit[]
    expect(events.map((e) => e.commit.rev)).toEqual(chain.map((c) => c.rev))
    expect(events.map((e) => e.ops.length)).toEqual(members.map(() => 1))
    expect(new Set(chain.map((c) => c.rev)).size).toBe(50)
    expect(chain[0].since).toBe(before.rev)
    expect(chain[0].prev?.toString()).toBe(before.cid)
    for (let i = 1; i < chain.length; i++) {
      expect(chain[i].since).toBe(chain[i - 1].rev)
      expect(chain[i].prev?.toString()).toBe(chain[i - 1].cid.toString())
      expect(chain[i].rev > chain[i - 1].rev).toBe(true)
    }
    const last = chain[chain.length - 1]
    expect(await head()).toEqual({ cid: last.cid.toString(), rev: last.rev })

    const verified = await verifiedRepo(h.url, h.did, { key: signingKey })
    expect(verified.commit.rev).toBe(last.rev)
    const crewKeys = verified.creates
      .filter((c) => c.collection === CREW)
      .map((c) => c.rkey)
      .sort()
    expect(crewKeys).toEqual([...members, OWNER].sort())
    for (const m of members) {
      const res = await getRecord(CREW, m)
      expect(res.status).toBe(200)
      expect(res.body.value.member).toBe(m)
    }
  })

  it('commits concurrent updates of one record in call order, so the last call wins', async () => {
    const { writer } = h.hold.ctx
    const rkey = 'did:plc:updatedoften'
    const tiers = Array.from({ length: 20 }, (_, i) => `tier-${i}`)
    const commits = await Promise.all(
      tiers.map((tier) =>
        writer.putRecords([
          { collection: CREW, rkey, record: crewRecord(rkey, { tier }) },
        ]),
      ),
    )
    expect(commits.every((c) => c !== null)).toBe(true)
    const res = await getRecord(CREW, rkey)
    expect(res.body.value.tier).toBe('tier-19')
    await verifiedRepo(h.url, h.did, { key: signingKey })
  })

  describe('when two records share one block (identical content, one CID)', () => {
    it.each([
      ['deleting', 'one commit'],
      ['deleting', 'two commits'],
      ['updating', 'one commit'],
      ['updating', 'two commits'],
    ])(
      '%s one of them, written in %s, keeps the block the other still needs',
      async (action, written) => {
        const { writer, storage } = h.hold.ctx
        const shared = crewRecord('did:plc:twin')
        const sharedCid = await cidForLex(shared)
        const a = { collection: CREW, rkey: 'twin-a', record: shared }
        const b = { collection: CREW, rkey: 'twin-b', record: shared }
        if (written === 'one commit') {
          await writer.putRecords([a, b])
        } else {
          await writer.putRecords([a])
          await writer.putRecords([b])
        }
        expect((await getRecord(CREW, 'twin-a')).body.cid).toBe(
          sharedCid.toString(),
        )
        expect((await getRecord(CREW, 'twin-b')).body.cid).toBe(
          sharedCid.toString(),
        )

        const commit =
          action === 'deleting'
            ? await writer.deleteRecords([{ collection: CREW, rkey: 'twin-a' }])
            : await writer.putRecords([
                {
                  collection: CREW,
                  rkey: 'twin-a',
                  record: crewRecord('did:plc:twin', { role: 'admin' }),
                },
              ])
        // The trap: the commit names the shared block as removed.
        expect([...(commit?.removed ?? [])]).toContain(sharedCid.toString())

        expect(await storage.has(sharedCid)).toBe(true)
        const other = await getRecord(CREW, 'twin-b')
        expect(other.status).toBe(200)
        expect(other.body.cid).toBe(sharedCid.toString())
        expect(other.body.value).toEqual(shared)

        const verified = await verifiedRepo(h.url, h.did, { key: signingKey })
        const twinB = verified.creates.find((c) => c.rkey === 'twin-b')
        expect(twinB?.cid.toString()).toBe(sharedCid.toString())
        expect(verified.creates.some((c) => c.rkey === 'twin-a')).toBe(
          action === 'updating',
        )

        const proof = await getBytes(h.url, ids.SyncGetRecord, {
          did: h.did,
          collection: CREW,
          rkey: 'twin-b',
        })
        expect(proof.status).toBe(200)
        const records = await verifyRecords(proof.bytes, h.did, signingKey)
        expect(records.find((r) => r.rkey === 'twin-b')?.record).toEqual(shared)
      },
    )

    it('drops the block once the last record using it is deleted', async () => {
      const { writer, storage } = h.hold.ctx
      const shared = crewRecord('did:plc:twin')
      const sharedCid = await cidForLex(shared)
      await writer.putRecords([
        { collection: CREW, rkey: 'twin-a', record: shared },
        { collection: CREW, rkey: 'twin-b', record: shared },
      ])
      await writer.deleteRecords([{ collection: CREW, rkey: 'twin-a' }])
      expect(await storage.has(sharedCid)).toBe(true)
      await writer.deleteRecords([{ collection: CREW, rkey: 'twin-b' }])
      expect(await storage.has(sharedCid)).toBe(false)
      expect((await getRecord(CREW, 'twin-b')).status).toBe(404)
      const verified = await verifiedRepo(h.url, h.did, { key: signingKey })
      expect(verified.creates.map((c) => c.rkey).sort()).toEqual(
        ['self', OWNER].sort(),
      )
    })

    it('still sends the block in a getRepo?since= diff that adds the second record', async () => {
      const { writer } = h.hold.ctx
      const shared = crewRecord('did:plc:twin')
      await writer.putRecords([
        { collection: CREW, rkey: 'twin-a', record: shared },
      ])
      const before = await readCarWithRoot(await fullRepo())
      const previous = await Repo.load(
        new MemoryBlockstore(before.blocks),
        before.root,
      )
      await writer.putRecords([
        { collection: CREW, rkey: 'twin-b', record: shared },
      ])
      const diff = await getBytes(h.url, ids.SyncGetRepo, {
        did: h.did,
        since: previous.commit.rev,
      })
      expect(diff.status).toBe(200)
      const verified = await verifyDiffCar(
        previous,
        diff.bytes,
        h.did,
        signingKey,
      )
      expect(
        verified.writes.map((w) => `${w.action} ${w.collection}/${w.rkey}`),
      ).toEqual([`create ${CREW}/twin-b`])
    })
  })

  it('makes no commit for an update to identical content, and commits only the changed record of a batch', async () => {
    const { writer } = h.hold.ctx
    const put = crewPut('did:plc:steady')
    expect(await writer.putRecords([put])).not.toBeNull()
    const events = commitsSeen()
    const before = await head()

    expect(
      await writer.putRecords([{ ...put, record: { ...put.record } }]),
    ).toBeNull()
    const captain = (await getRecord(CAPTAIN, 'self')).body.value as LexMap
    expect(
      await writer.putRecords([
        { collection: CAPTAIN, rkey: 'self', record: captain },
      ]),
    ).toBeNull()
    expect(events).toEqual([])
    expect(await head()).toEqual(before)

    const mixed = await writer.putRecords([put, crewPut('did:plc:newcomer')])
    expect(mixed).not.toBeNull()
    expect(events).toHaveLength(1)
    expect(events[0].ops.map((op) => op.rkey)).toEqual(['did:plc:newcomer'])
  })

  it.each([
    ['a crew record without a role', CREW, { role: undefined }],
    ['a crew record whose member is not a DID', CREW, { member: 'alice' }],
    [
      'a crew record whose permissions are not a list',
      CREW,
      { permissions: 'blob:read' },
    ],
    [
      'a crew record whose addedAt is not a datetime',
      CREW,
      { addedAt: 'yesterday' },
    ],
    ['a captain record without an owner', CAPTAIN, { owner: undefined }],
    ['a record of a collection with no lexicon', 'io.atcr.hold.unknown', {}],
  ])(
    'refuses %s and commits nothing of its batch',
    async (_name, collection, change) => {
      const { writer } = h.hold.ctx
      const events = commitsSeen()
      const before = await head()
      const base =
        collection === CAPTAIN
          ? (await getRecord(CAPTAIN, 'self')).body.value
          : crewRecord('did:plc:invalid')
      const record = JSON.parse(
        JSON.stringify({ ...base, $type: collection, ...change }),
      )

      await expect(
        writer.putRecords([
          crewPut('did:plc:validneighbour'),
          {
            collection,
            rkey: collection === CAPTAIN ? 'self' : 'invalid',
            record,
          },
        ]),
      ).rejects.toThrow()

      expect(events).toEqual([])
      expect(await head()).toEqual(before)
      expect((await getRecord(CREW, 'did:plc:validneighbour')).status).toBe(404)
      // The queue is not wedged by the refusal.
      expect(
        await writer.putRecords([crewPut('did:plc:afterwards')]),
      ).not.toBeNull()
      await verifiedRepo(h.url, h.did, { key: signingKey })
    },
  )
})
