import { randomBytes } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  pushBlob,
  removeDir,
  ROOT,
  startHold,
  TEST_OWNER,
  xrpc,
  type TestHold,
} from '../_util.ts'

/** Debian's chromium; playwright-core downloads nothing. */
const CHROMIUM = '/usr/bin/chromium'
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const SCREENSHOT = join(ROOT, 'test-results/status-page.png')

type BrowserWindow = {
  getComputedStyle(el: unknown): { backgroundColor: string }
}

const OTHER = 'did:plc:browserother000000000000'
const SEED = [
  { did: TEST_OWNER, repo: 'myapp', pulls: 24 },
  { did: TEST_OWNER, repo: 'tools/builder', pulls: 15 },
  { did: OTHER, repo: 'web/frontend', pulls: 9 },
  { did: OTHER, repo: 'lib/base-image', pulls: 5 },
  { did: TEST_OWNER, repo: 'api', pulls: 2 },
]

describe('the status page in Chromium', () => {
  let hold: TestHold
  let browser: Browser

  beforeAll(async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (apt-get install chromium)`).toBe(
      true,
    )
    hold = await startHold()
    // Real counts: one push and `pulls` counted getBlob calls per repository.
    for (const { did, repo, pulls } of SEED) {
      const { digest, status } = await pushBlob(hold.url, randomBytes(64), {
        did,
        repo,
      })
      expect(status).toBe(201)
      await Promise.all(
        Array.from({ length: pulls }, async (_, i) => {
          const res = await xrpc(hold.url, 'com.atproto.sync.getBlob', {
            did,
            cid: digest,
            repo,
            method: i % 2 ? 'GET' : undefined,
          })
          expect(res.status).toBe(200)
        }),
      )
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
    })
  })
  afterAll(async () => {
    await browser?.close()
    if (hold) {
      await hold.stop()
      await removeDir(hold.dataDir)
    }
  })

  it('shows the hold DID, the owner, the totals and one bar per repository, longest for the most pulled', async () => {
    const page = await browser.newPage({
      viewport: { width: 900, height: 800 },
      colorScheme: 'light',
    })
    const problems: string[] = []
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text())
    })
    page.on('pageerror', (e) => problems.push(e.message))
    const res = await page.goto(`${hold.url}/`)
    expect(res?.status()).toBe(200)

    const did = page.locator('#hold-did')
    expect(await did.isVisible()).toBe(true)
    expect(await did.textContent()).toBe(hold.did)
    const owner = page.locator('#owner-did')
    expect(await owner.isVisible()).toBe(true)
    expect(await owner.textContent()).toBe(TEST_OWNER)
    expect(await page.locator('.badge').textContent()).toBe('public')
    const totalPulls = SEED.reduce((n, s) => n + s.pulls, 0)
    expect(await page.locator('#total-pulls').textContent()).toBe(
      String(totalPulls),
    )
    expect(await page.locator('#total-pushes').textContent()).toBe(
      String(SEED.length),
    )

    // The inline stylesheet applied (the page's CSP allows it and nothing else).
    expect(
      await page
        .locator('.card')
        .first()
        .evaluate(
          (el) =>
            // Runs in the page; the project's types have no DOM.
            (globalThis as unknown as BrowserWindow).getComputedStyle(el)
              .backgroundColor,
        ),
    ).toBe('rgb(255, 255, 255)')

    const bars = page.locator('svg.chart rect.bar')
    expect(await bars.count()).toBe(SEED.length)
    const widths: number[] = []
    for (let i = 0; i < SEED.length; i++) {
      const bar = bars.nth(i)
      expect(await bar.isVisible()).toBe(true)
      expect(await bar.getAttribute('data-pulls')).toBe(String(SEED[i].pulls))
      widths.push((await bar.boundingBox())!.width)
    }
    // Drawn to scale: each bar's width is its share of the largest.
    for (let i = 0; i < SEED.length; i++) {
      expect(widths[i] / widths[0]).toBeCloseTo(
        SEED[i].pulls / SEED[0].pulls,
        1,
      )
    }
    const labels = await page.locator('svg.chart text.repo').allTextContents()
    expect(labels).toEqual(SEED.map((s) => s.repo))
    for (const { repo } of SEED) {
      expect(
        await page.getByRole('cell', { name: repo, exact: true }).isVisible(),
      ).toBe(true)
    }
    expect(problems).toEqual([])

    await mkdir(join(ROOT, 'test-results'), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000)
    await page.close()
  })
})
