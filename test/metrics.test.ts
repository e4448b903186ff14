import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import {
  pushBlob,
  removeDir,
  startHold,
  TEST_OWNER,
  waitFor,
  xrpc,
  type TestHold,
} from './_util.ts'

type Sample = { name: string; labels: Record<string, string>; value: number }

/** Parses Prometheus text format, failing on any line that is not a comment or a sample. */
const parseMetrics = (text: string) => {
  const samples: Sample[] = []
  const types = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary)$/.exec(line)
    if (type) {
      types.set(type[1], (types.get(type[1]) ?? 0) + 1)
      continue
    }
    if (line.startsWith('# HELP ')) continue
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`not Prometheus text: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2]
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) })
  }
  /** The value of the one sample with exactly these labels, or undefined when there is none. */
  const value = (name: string, labels: Record<string, string> = {}) => {
    const found = samples.filter(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )
    if (found.length > 1) throw new Error(`${name} is ambiguous`)
    return found[0]?.value
  }
  return { samples, types, value }
}

const scrape = async (url: string) => {
  const res = await fetch(`${url}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toBe(
    'text/plain; version=0.0.4; charset=utf-8',
  )
  return parseMetrics(await res.text())
}

const holds: TestHold[] = []
const start = async (env: Record<string, string> = {}) => {
  const hold = await startHold({ env })
  holds.push(hold)
  return hold
}
afterEach(async () => {
  for (const hold of holds.splice(0)) {
    await hold.stop()
    await removeDir(hold.dataDir)
  }
})

const pull = (url: string, digest: string, repo?: string) =>
  xrpc(url, ids.SyncGetBlob, {
    did: TEST_OWNER,
    cid: digest,
    repo,
    method: 'GET',
  })

describe('GET /metrics', () => {
  it('counts requests by NSID or route and status, and puts paths the hold does not serve under one label', async () => {
    const { url } = await start()
    const { digest } = await pushBlob(url, randomBytes(64), {
      did: TEST_OWNER,
    })
    for (let i = 0; i < 3; i++) {
      expect((await pull(url, digest, 'app')).status).toBe(200)
    }
    const bad = await xrpc(url, ids.SyncGetBlob, {
      did: TEST_OWNER,
      cid: 'sha256:nothex',
    })
    expect(bad.status).toBe(400)
    expect((await xrpc(url, 'com.example.invented.method')).status).toBe(501)
    expect((await fetch(`${url}/invented/path`)).status).toBe(404)
    const signed = await pull(url, digest)
    const download = await fetch((signed.body as { url: string }).url)
    expect(download.status).toBe(200)
    await download.arrayBuffer()

    // The download is recorded when its last byte has gone out.
    const m = (await waitFor(async () => {
      const m = await scrape(url)
      const downloads = m.value('hold_http_requests_total', {
        route: '/blobs/sha256/:hex',
        method: 'GET',
        status: '200',
      })
      return downloads === 1 ? m : undefined
    }))!
    const getBlob = ids.SyncGetBlob
    expect(
      m.value('hold_http_requests_total', {
        route: getBlob,
        method: 'GET',
        status: '200',
      }),
    ).toBe(5) // the PUT URL of pushBlob, three pulls, one unrepo'd GET URL
    expect(
      m.value('hold_http_requests_total', {
        route: getBlob,
        method: 'GET',
        status: '400',
      }),
    ).toBe(1)
    expect(
      m.value('hold_http_requests_total', {
        route: 'xrpc:unknown',
        method: 'GET',
        status: '501',
      }),
    ).toBe(1)
    expect(
      m.value('hold_http_requests_total', {
        route: 'unknown',
        method: 'GET',
        status: '404',
      }),
    ).toBe(1)
    expect(
      m.value('hold_http_requests_total', {
        route: '/blobs/sha256/:hex',
        method: 'PUT',
        status: '201',
      }),
    ).toBe(1)
    expect(
      m.value('hold_http_request_duration_seconds_count', { route: getBlob }),
    ).toBe(6)
    const labels = m.samples.flatMap((s) => Object.values(s.labels))
    expect(labels).not.toContain('com.example.invented.method')
    expect(labels).not.toContain('/invented/path')
    expect(labels.some((l) => l.includes(digest.slice(7)))).toBe(false)
  })

  it('reports counted pulls and pushes, pending and dirty counters, flush duration and size, commits and records', async () => {
    const hold = await start({ HOLD_STATS_FLUSH_MS: '3600000' })
    const { url } = hold
    const a = await pushBlob(url, randomBytes(64), {
      did: TEST_OWNER,
      repo: 'alpha',
    })
    await pushBlob(url, randomBytes(64), { did: TEST_OWNER, repo: 'beta' })
    for (let i = 0; i < 5; i++) {
      expect((await pull(url, a.digest, 'alpha')).status).toBe(200)
    }
    // Counts reach the SQLite table within 25 ms; the records wait for a flush (an hour).
    await waitFor(() => hold.hold.ctx.stats.pendingPairs === 0)
    const before = await scrape(url)
    expect(before.value('hold_stats_counted_total', { kind: 'pull' })).toBe(5)
    expect(before.value('hold_stats_counted_total', { kind: 'push' })).toBe(2)
    expect(before.value('hold_stats_pending_pairs')).toBe(0)
    expect(before.value('hold_stats_dirty_counters')).toBe(2)
    expect(
      before.value('hold_repo_records', { collection: ids.HoldStats }),
    ).toBeUndefined()
    expect(
      before.value('hold_repo_records', {
        collection: ids.HoldCaptain,
      }),
    ).toBe(1)
    expect(before.value('hold_stats_flush_duration_seconds_count')).toBe(0)
    const commitsBefore = before.value('hold_repo_commits_total')!

    const flushed = await hold.hold.ctx.stats.flush()
    expect(flushed).toMatchObject({ records: 2, commits: 1 })

    const after = await scrape(url)
    expect(after.value('hold_stats_dirty_counters')).toBe(0)
    expect(
      after.value('hold_repo_records', { collection: ids.HoldStats }),
    ).toBe(2)
    expect(after.value('hold_repo_commits_total')).toBe(commitsBefore + 1)
    expect(
      after.value('hold_repo_ops_total', {
        collection: ids.HoldStats,
        action: 'create',
      }),
    ).toBe(2)
    expect(after.value('hold_stats_flush_duration_seconds_count')).toBe(1)
    expect(after.value('hold_stats_flush_duration_seconds_sum')).toBeCloseTo(
      flushed.ms / 1000,
      6,
    )
    expect(after.value('hold_stats_flush_records_sum')).toBe(2)
    expect(after.value('hold_stats_flush_records_count')).toBe(1)
  })

  it('counts what the per-client limit drops, and what code outside the limiter reports', async () => {
    const hold = await start({ HOLD_STATS_MAX_PER_MINUTE: '2' })
    const { digest } = await pushBlob(hold.url, randomBytes(64), {
      did: TEST_OWNER,
    })
    for (let i = 0; i < 5; i++) {
      expect((await pull(hold.url, digest, 'limited')).status).toBe(200)
    }
    let m = await scrape(hold.url)
    expect(m.value('hold_stats_counted_total', { kind: 'pull' })).toBe(2)
    expect(m.value('hold_stats_dropped_total')).toBe(3)

    hold.hold.ctx.metrics.droppedCounts.inc()
    m = await scrape(hold.url)
    expect(m.value('hold_stats_dropped_total')).toBe(4)
  })

  it('gives each hold in a process its own numbers, and the process metrics once', async () => {
    const one = await start()
    const two = await start()
    const { digest } = await pushBlob(one.url, randomBytes(64), {
      did: TEST_OWNER,
    })
    for (let i = 0; i < 3; i++) await pull(one.url, digest, 'only-one')

    const m1 = await scrape(one.url)
    const m2 = await scrape(two.url)
    expect(m1.value('hold_stats_counted_total', { kind: 'pull' })).toBe(3)
    expect(m2.value('hold_stats_counted_total', { kind: 'pull' })).toBe(0)
    expect(m1.value('hold_info', { did: one.did, version: 'test' })).toBe(1)
    expect(m2.value('hold_info', { did: two.did, version: 'test' })).toBe(1)
    expect(m2.samples.some((s) => s.labels.route === ids.SyncGetBlob)).toBe(
      false,
    )
    for (const m of [m1, m2]) {
      expect(m.value('process_cpu_user_seconds_total')).toBeGreaterThan(0)
      expect(m.value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0)
      // Every family is declared exactly once.
      expect([...m.types.values()].every((n) => n === 1)).toBe(true)
      expect(m.types.has('process_resident_memory_bytes')).toBe(true)
    }
  })
})
