import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  callAs,
  manifestBody,
  NOTIFY,
  pushLayers,
  type Layer,
} from './_appview.ts'
import {
  removeDir,
  startHold,
  TEST_OWNER,
  xrpc,
  type TestHold,
} from './_util.ts'

const D1 = `sha256:${'1'.repeat(64)}`
const D2 = `sha256:${'2'.repeat(64)}`

type View = {
  pullCount: number
  pushCount: number
  tag?: string
  manifestDigest?: string
}

describe('per-tag and per-manifest counts under HOLD_COUNT_SOURCE=manifest', () => {
  let h: TestHold
  let layers: Layer[]
  const notify = async (
    operation: string,
    tag: string | undefined,
    manifestDigest: string,
  ) => {
    const body = manifestBody(TEST_OWNER, layers, {
      repository: 'tagged',
      operation,
      manifestDigest,
    })
    if (tag === undefined) delete body.tag
    else body.tag = tag
    const res = await callAs(h.url, NOTIFY, TEST_OWNER, body)
    expect(res.status, JSON.stringify(res.body)).toBe(200)
  }
  const stats = async (params: Record<string, string>) => {
    const res = await xrpc<View>(h.url, ids.HoldGetStats, {
      did: TEST_OWNER,
      repo: 'tagged',
      ...params,
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldGetStats, res.body)
    return res.body
  }

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_COUNT_SOURCE: 'manifest' } })
    layers = await pushLayers(h.url, 1)
    await notify('push', 'v1', D1)
    await notify('push', 'latest', D1)
    await notify('push', 'latest', D2)
    for (let i = 0; i < 3; i++) await notify('pull', 'v1', D1)
    for (let i = 0; i < 5; i++) await notify('pull', 'latest', D2)
    // A pull by digest names no tag.
    await notify('pull', undefined, D1)
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('getStats answers a tag or a manifest, beside the repository total', async () => {
    expect(await stats({})).toMatchObject({ pullCount: 9, pushCount: 3 })
    expect(await stats({ tag: 'v1' })).toMatchObject({
      tag: 'v1',
      pullCount: 3,
      pushCount: 1,
    })
    expect(await stats({ tag: 'latest' })).toMatchObject({
      pullCount: 5,
      pushCount: 2,
    })
    expect(await stats({ manifestDigest: D1 })).toMatchObject({
      manifestDigest: D1,
      pullCount: 4,
      pushCount: 2,
    })
    expect(await stats({ manifestDigest: D2 })).toMatchObject({
      pullCount: 5,
      pushCount: 1,
    })
    expect(await stats({ tag: 'never' })).toMatchObject({
      pullCount: 0,
      pushCount: 0,
    })
  })

  it('listStats with repo breaks the repository down by tag, paged by cursor', async () => {
    const first = await xrpc<{ stats: View[]; cursor?: string }>(
      h.url,
      ids.HoldListStats,
      { did: TEST_OWNER, repo: 'tagged', limit: 1 },
    )
    expect(first.status).toBe(200)
    h.hold.ctx.lexicons.assertValidXrpcOutput(ids.HoldListStats, first.body)
    expect(first.body.stats).toEqual([
      expect.objectContaining({ tag: 'latest', pullCount: 5, pushCount: 2 }),
    ])
    const second = await xrpc<{ stats: View[]; cursor?: string }>(
      h.url,
      ids.HoldListStats,
      { did: TEST_OWNER, repo: 'tagged', limit: 1, cursor: first.body.cursor },
    )
    expect(second.body.stats).toEqual([
      expect.objectContaining({ tag: 'v1', pullCount: 3, pushCount: 1 }),
    ])
  })

  it('refuses a bad tag, digest or cursor with 400, and a bad tag in a notification', async () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      [ids.HoldGetStats, { tag: '.hidden' }, /tag must be an OCI tag/],
      [ids.HoldGetStats, { tag: 'a b' }, /tag must be an OCI tag/],
      [ids.HoldGetStats, { manifestDigest: 'sha256:xyz' }, /manifestDigest/],
      [ids.HoldGetStats, { tag: 'v1', manifestDigest: D1 }, /not both/],
      [ids.HoldListStats, { cursor: '!!' }, /cursor/],
      [ids.HoldListStats, { repo: 'UP' }, /repo/],
    ]
    for (const [nsid, params, message] of cases) {
      const res = await xrpc<{ error: string; message: string }>(h.url, nsid, {
        did: TEST_OWNER,
        repo: 'tagged',
        ...params,
      })
      expect(res.status, JSON.stringify(params)).toBe(400)
      expect(res.body.error).toBe('InvalidRequest')
      expect(res.body.message).toMatch(message)
    }
    const body = manifestBody(TEST_OWNER, layers, {
      repository: 'tagged',
      operation: 'pull',
      manifestDigest: D1,
    })
    const res = await callAs<{ error: string }>(h.url, NOTIFY, TEST_OWNER, {
      ...body,
      tag: '-bad',
    })
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('InvalidRequest')
    expect(await stats({})).toMatchObject({ pullCount: 9 })
  })

  it('forgets them on a reset', async () => {
    await h.hold.ctx.stats.reset(TEST_OWNER, 'tagged')
    expect(await stats({ tag: 'v1' })).toMatchObject({ pullCount: 0 })
    expect(await stats({ manifestDigest: D1 })).toMatchObject({ pullCount: 0 })
  })
})

describe('per-tag counts on a hold that counts blobs', () => {
  let h: TestHold
  beforeAll(async () => {
    h = await startHold()
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('are refused with 400, naming HOLD_COUNT_SOURCE', async () => {
    for (const [nsid, params] of [
      [ids.HoldGetStats, { repo: 'app', tag: 'v1' }],
      [ids.HoldGetStats, { repo: 'app', manifestDigest: D1 }],
      [ids.HoldListStats, { repo: 'app' }],
    ] as const) {
      const res = await xrpc<{ error: string; message: string }>(h.url, nsid, {
        did: TEST_OWNER,
        ...params,
      })
      expect(res.status).toBe(400)
      expect(res.body.message).toContain('HOLD_COUNT_SOURCE=manifest')
    }
  })
})
