import { ids } from '../src/ids.ts'
import { decode } from '@atproto/lex-cbor'
import { parseCid } from '@atproto/lex-data'
import { readCar } from '@atproto/repo'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { removeDir, startHold, xrpc, type TestHold } from './_util.ts'

// sync.getBlocks and sync.listBlobs as the reference PDS answers them, and every refusal a 4xx.

describe('sync.getBlocks and sync.listBlobs', () => {
  let h: TestHold
  let commit: string
  let data: string

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_STATS_FLUSH_MS: '3600000' } })
    const latest = await xrpc<{ cid: string }>(h.url, ids.SyncGetLatestCommit, {
      did: h.did,
    })
    commit = latest.body.cid
    const block = h.hold.ctx.storage.getBlockSync(commit)!
    data = String((decode(block) as { data: unknown }).data)
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  const blocksUrl = (query: string) =>
    `${h.url}/xrpc/com.atproto.sync.getBlocks?did=${encodeURIComponent(h.did)}${query}`

  it('answers the blocks named by repeated cids as a CAR with no root', async () => {
    const res = await fetch(blocksUrl(`&cids=${commit}&cids=${data}`))
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/vnd.ipld.car')
    const car = await readCar(new Uint8Array(await res.arrayBuffer()))
    expect(car.roots).toEqual([])
    expect(car.blocks.has(parseCid(commit))).toBe(true)
    expect(car.blocks.has(parseCid(data))).toBe(true)
    expect(car.blocks.size).toBe(2)
  })

  it.each([
    ['no cids', '', 'missing required parameter: cids'],
    ['a CID that is not one', '&cids=notacid', 'cids must be CIDs'],
    ['too many cids', '&cids=x'.repeat(201), 'more than 200 times'],
  ])('refuses %s with 400 InvalidRequest', async (_name, query, message) => {
    const res = await fetch(blocksUrl(query))
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: string; message: string }
    expect(body.error).toBe('InvalidRequest')
    expect(body.message).toContain(message)
  })

  it('refuses CIDs the repo does not hold with 400, naming them', async () => {
    const absent = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
    const res = await fetch(blocksUrl(`&cids=${commit}&cids=${absent}`))
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'InvalidRequest',
      message: `Could not find cids: ${absent}`,
    })
  })

  it('refuses another DID with 404 RepoNotFound', async () => {
    const res = await xrpc(h.url, ids.SyncGetBlocks, {
      did: 'did:plc:someoneelse',
      cids: commit,
    })
    expect(res.status).toBe(404)
    expect(res.body).toMatchObject({ error: 'RepoNotFound' })
    const blobs = await xrpc(h.url, ids.SyncListBlobs, {
      did: 'did:plc:someoneelse',
    })
    expect(blobs.status).toBe(404)
    expect(blobs.body).toMatchObject({ error: 'RepoNotFound' })
  })

  it('lists no blobs: the hold’s records reference none', async () => {
    const res = await xrpc(h.url, ids.SyncListBlobs, {
      did: h.did,
      since: '3kabcdefghij2',
      limit: 1000,
    })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ cids: [] })
  })

  it.each([
    ['a since that is not a rev', { since: 'yesterday' }],
    ['limit 0', { limit: 0 }],
    ['limit 1001', { limit: 1001 }],
    ['a cursor that is not a CID', { cursor: 'page2' }],
    ['no did', { did: undefined }],
  ])('refuses listBlobs with %s (400)', async (_name, params) => {
    const res = await xrpc(h.url, ids.SyncListBlobs, {
      did: h.did,
      ...params,
    })
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ error: 'InvalidRequest' })
  })

  it('answers a plain request to subscribeRepos with 400, saying to upgrade', async () => {
    const res = await xrpc(h.url, ids.SyncSubscribeRepos)
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ error: 'InvalidRequest' })
    expect((res.body as { message: string }).message).toContain('WebSocket')
  })
})
