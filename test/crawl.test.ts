import { afterEach, describe, expect, it } from 'vitest'
import { Crawlers } from '../src/firehose/crawlers.ts'
import { statsPuts } from './_evented-repo.ts'
import { startRelay, type Relay } from './_relay.ts'
import { removeDir, sleep, startHold, waitFor, type TestHold } from './_util.ts'

// requestCrawl to the relays of HOLD_CRAWLERS, against a local relay stand-in: at start, not
// again during a burst, again when events follow a quiet spell; retries and the relay's answer.

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

const relay = async (answer?: Parameters<typeof startRelay>[0]) => {
  const r = await startRelay(answer)
  cleanup.push(() => new Promise((resolve) => r.server.close(() => resolve())))
  return r
}

const hold = async (relays: Relay[], intervalMs: number) => {
  const h: TestHold = await startHold({
    env: {
      HOLD_CRAWLERS: relays.map((r) => r.url).join(','),
      HOLD_STATS_FLUSH_MS: '3600000',
    },
    overrides: { crawlers: { intervalMs, backoffMs: 20 } },
  })
  cleanup.push(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })
  return h
}

describe('requestCrawl', () => {
  it('asks each relay at start, not again in a burst, and again after a quiet spell', async () => {
    const [a, b] = [await relay(), await relay()]
    const h = await hold([a, b], 1500)
    const host = `localhost:${h.port}`
    await waitFor(() => a.requests.length === 1 && b.requests.length === 1)
    expect(a.requests).toEqual([host])
    const { writer } = h.hold.ctx
    for (let i = 0; i < 5; i++) await writer.putRecords(statsPuts(i * 3, 3))
    await sleep(200)
    expect(a.requests).toHaveLength(1)
    await sleep(1500)
    // Quiet: nothing is asked without new events.
    expect(a.requests).toHaveLength(1)
    await writer.putRecords(statsPuts(100, 1))
    await waitFor(() => a.requests.length === 2 && b.requests.length === 2)
    expect(h.hold.ctx.crawlers.answers.get(a.url)).toMatchObject({
      ok: true,
      status: 200,
      attempts: 1,
    })
    // The status page and the metrics show it.
    const page = await (await fetch(`${h.url}/`)).text()
    expect(page).toContain(a.url)
    expect(page).toContain('crawling requested')
    const metrics = await (await fetch(`${h.url}/metrics`)).text()
    expect(metrics).toContain(
      `hold_crawl_requests_total{relay="${a.url}",result="ok"} 2`,
    )
  })

  it('retries a relay that fails, and takes a 4xx as its answer', async () => {
    const flaky = await relay((n) =>
      n <= 2 ? { status: 503 } : { status: 200 },
    )
    const refusing = await relay(() => ({
      status: 400,
      body: { error: 'HostNotFound', message: 'could not reach the host' },
    }))
    const h = await hold([flaky, refusing], 60_000)
    await waitFor(() => flaky.requests.length === 3)
    const { answers } = h.hold.ctx.crawlers
    await waitFor(() => answers.get(flaky.url)?.ok === true)
    expect(answers.get(flaky.url)?.attempts).toBe(3)
    expect(refusing.requests).toHaveLength(1)
    expect(answers.get(refusing.url)).toMatchObject({
      ok: false,
      status: 400,
      error: 'HostNotFound: could not reach the host',
      attempts: 1,
    })
    const page = await (await fetch(`${h.url}/`)).text()
    expect(page).toContain('HostNotFound: could not reach the host')
  })

  it('gives up after its attempts on a relay that does not answer, without failing the hold', async () => {
    const crawlers = new Crawlers({
      publicUrl: 'https://hold.example.com',
      // Nothing listens on port 9 of loopback.
      relays: ['http://127.0.0.1:9'],
      options: { attempts: 3, backoffMs: 10 },
    })
    crawlers.requestNow()
    await waitFor(
      () => crawlers.answers.get('http://127.0.0.1:9')?.attempts === 3,
    )
    await sleep(100)
    expect(crawlers.answers.get('http://127.0.0.1:9')).toMatchObject({
      ok: false,
      attempts: 3,
    })
    crawlers.stop()
  })
})
