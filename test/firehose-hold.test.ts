import { afterEach, describe, expect, it } from 'vitest'
import { statsPuts } from './_evented-repo.ts'
import { subscribe } from './_firehose.ts'
import { startLogged } from './_logged.ts'
import { removeDir, startHold, tempDir, type TestHold } from './_util.ts'

// subscribeRepos on the hold's own port: what the hold serves, shows and logs of it, and a
// stop with subscribers connected.

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

const hold = async (env: Record<string, string> = {}) => {
  const h: TestHold = await startHold({
    env: { HOLD_STATS_FLUSH_MS: '3600000', ...env },
  })
  cleanup.push(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })
  return h
}

describe('subscribeRepos on the hold', () => {
  it('serves the log from a cursor and live commits, and shows them in metrics and on the status page', async () => {
    const h = await hold()
    const { writer } = h.hold.ctx
    const sub = await subscribe(h.url, '?cursor=0')
    await writer.putRecords(statsPuts(0, 3))
    const head = writer.sequencer.current()
    await sub.untilSeq(head)
    expect(sub.seqs()).toEqual(Array.from({ length: head }, (_, i) => i + 1))
    const metrics = await (await fetch(`${h.url}/metrics`)).text()
    expect(metrics).toContain(`hold_firehose_seq ${head}`)
    expect(metrics).toContain('hold_firehose_subscribers 1')
    expect(metrics).toMatch(/hold_firehose_events_total\{type="commit"\} \d+/)
    expect(metrics).toMatch(/hold_firehose_frames_sent_total \d+/)
    const page = await (await fetch(`${h.url}/`)).text()
    expect(page).toContain(`seq ${head}, 1 subscriber, events kept 72 h`)
    expect(page).toContain('none configured (HOLD_CRAWLERS)')
    sub.ws.close()
  })

  it('stops promptly with subscribers connected, closing them as going away (1001)', async () => {
    const h = await startHold()
    cleanup.push(() => removeDir(h.dataDir))
    const subs = await Promise.all([1, 2].map(() => subscribe(h.url)))
    h.hold.drainGraceMs = 60_000
    const started = Date.now()
    await h.stop()
    // Without the firehose closed first, the stop waits out the grace period.
    expect(Date.now() - started).toBeLessThan(10_000)
    for (const sub of subs) expect((await sub.closed).code).toBe(1001)
  })
})

describe('HOLD_STATS_FLUSH_MS and relays', () => {
  it('warns at start when the flush interval is below what relays allow a new host, and not at the default', async () => {
    const dir = await tempDir()
    cleanup.push(() => removeDir(dir))
    const low = await startLogged(dir, { HOLD_STATS_FLUSH_MS: '1000' })
    await low.stop()
    const warning = low
      .warnings()
      .find((w) => w.includes('HOLD_STATS_FLUSH_MS'))
    expect(warning).toContain('HOLD_STATS_FLUSH_MS=1000')
    expect(warning).toContain('86400 commits a day')
    expect(warning).not.toContain('\n')
    const dir2 = await tempDir()
    cleanup.push(() => removeDir(dir2))
    const env = { HOLD_STATS_FLUSH_MS: '' }
    const normal = await startLogged(dir2, env)
    await normal.stop()
    expect(normal.hold.ctx.cfg.statsFlushMs).toBe(60_000)
    expect(
      normal.warnings().filter((w) => w.includes('HOLD_STATS_FLUSH_MS')),
    ).toEqual([])
  })
})
