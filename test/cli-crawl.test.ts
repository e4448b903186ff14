import { afterEach, describe, expect, it } from 'vitest'
import { cliFor, lines } from './_cli.ts'
import { startRelay } from './_relay.ts'
import { removeDir, startHold, waitFor } from './_util.ts'

// The operator CLI's `crawl`, and the relays in `status`, against a relay stand-in.

const PASSWORD = 'op-secret-crawl-1'

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

const hold = async (env: Record<string, string>) => {
  const h = await startHold({
    env: { HOLD_ADMIN_PASSWORD: PASSWORD, ...env },
  })
  cleanup.push(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })
  return { h, cli: cliFor(h.url, PASSWORD) }
}

describe('atcr-hold crawl and status', () => {
  it('asks the relays now and prints their answers; status shows the firehose and each relay', async () => {
    const relay = await startRelay()
    cleanup.push(
      () => new Promise((resolve) => relay.server.close(() => resolve())),
    )
    const { h, cli } = await hold({ HOLD_CRAWLERS: relay.url })
    await waitFor(() => relay.requests.length === 1)
    const r = await cli(['crawl'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(lines(r.stdout)).toEqual([
      expect.stringMatching(
        new RegExp(`^${relay.url}: crawl requested \\d{4}-`),
      ),
    ])
    expect(relay.requests).toEqual([
      `localhost:${h.port}`,
      `localhost:${h.port}`,
    ])
    const status = lines((await cli(['status'])).stdout)
    expect(status).toContainEqual(
      expect.stringMatching(
        /^firehose +seq \d+ \(kept from 1\), 0 subscribers$/,
      ),
    )
    expect(status).toContainEqual(
      expect.stringMatching(
        new RegExp(`^relays +${relay.url}: crawl requested`),
      ),
    )
    const json = JSON.parse((await cli(['status', '--json'])).stdout)
    expect(json.firehose.relays[0]).toMatchObject({
      url: relay.url,
      answer: { ok: true, status: 200 },
    })
  })

  it('refuses crawl with one line naming HOLD_CRAWLERS when no relay is configured', async () => {
    const { cli } = await hold({})
    const r = await cli(['crawl'])
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(lines(r.stderr)).toEqual([
      expect.stringContaining('set HOLD_CRAWLERS on the hold'),
    ])
    expect(lines((await cli(['status'])).stdout)).toContain(
      'relays          none (HOLD_CRAWLERS)',
    )
  })
})
