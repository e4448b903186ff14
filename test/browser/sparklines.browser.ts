import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DAY_MS } from '../../src/stats/days.ts'
import { removeDir, ROOT, startHold, type TestHold } from '../_util.ts'

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
const SCREENSHOT = join(ROOT, 'test-results/status-sparkline.png')
const OWNER = 'did:plc:sparkowner000000000000000'

/** What the page's canvas says of a PNG: its size, and per column the topmost "bar" pixel. */
type Pixels = { width: number; height: number; colored: number; tops: number[] }

describe('the status page sparklines in Chromium', () => {
  let hold: TestHold
  let browser: Browser

  beforeAll(async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (apt-get install chromium)`).toBe(
      true,
    )
    hold = await startHold()
    // Pulls rising over the last 30 days: day k (0 the oldest) has k + 1 pulls.
    const now = Date.now()
    for (let k = 0; k < 30; k++) {
      for (let i = 0; i <= k; i++) {
        hold.hold.ctx.stats.countPull(OWNER, 'rising', now - (29 - k) * DAY_MS)
      }
    }
    hold.hold.ctx.stats.persist()
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

  it('draws the daily chart and a sparkline per repository, rising left to right in the screenshot', async () => {
    const page = await browser.newPage({
      viewport: { width: 900, height: 900 },
      colorScheme: 'light',
    })
    const problems: string[] = []
    page.on('pageerror', (e) => problems.push(e.message))
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text())
    })
    expect((await page.goto(`${hold.url}/`))?.status()).toBe(200)
    const chart = page.locator('#daily-chart')
    expect(await chart.isVisible()).toBe(true)
    expect(await page.locator('svg.spark:not(#daily-chart)').count()).toBe(1)
    expect(
      await page.locator('svg.spark:not(#daily-chart)').first().isVisible(),
    ).toBe(true)
    const png = await chart.screenshot()
    await mkdir(join(ROOT, 'test-results'), { recursive: true })
    await writeFile(SCREENSHOT, png)
    expect(problems).toEqual([])

    // The screenshot read back through a canvas, in a blank page (no CSP there).
    const blank = await browser.newPage()
    const pixels = (await blank.evaluate(async (b64: string) => {
      // Runs in the page; the project's types have no DOM.
      const g = globalThis as unknown as {
        Image: new () => {
          src: string
          width: number
          height: number
          decode(): Promise<void>
        }
        document: {
          createElement(tag: 'canvas'): {
            width: number
            height: number
            getContext(kind: '2d'): {
              drawImage(img: unknown, x: number, y: number): void
              getImageData(
                x: number,
                y: number,
                w: number,
                h: number,
              ): { data: Uint8ClampedArray }
            }
          }
        }
      }
      const img = new g.Image()
      img.src = `data:image/png;base64,${b64}`
      await img.decode()
      const canvas = g.document.createElement('canvas')
      canvas.width = img.width
      canvas.height = img.height
      const ctx = canvas.getContext('2d')
      ctx.drawImage(img, 0, 0)
      const { data } = ctx.getImageData(0, 0, img.width, img.height)
      const tops: number[] = []
      let colored = 0
      for (let x = 0; x < img.width; x++) {
        let top = -1
        for (let y = 0; y < img.height; y++) {
          const o = (y * img.width + x) * 4
          // The line's blue (#2f81f7), allowing for anti-aliasing.
          const blue =
            data[o + 2] > 200 &&
            data[o] < 120 &&
            data[o + 1] > 90 &&
            data[o + 1] < 170
          if (blue) {
            colored++
            if (top < 0) top = y
          }
        }
        tops.push(top)
      }
      return { width: img.width, height: img.height, colored, tops }
    }, png.toString('base64'))) as Pixels
    await blank.close()
    await page.close()

    expect(pixels.width).toBeGreaterThan(300)
    // A line across the whole chart, not an empty box.
    expect(pixels.colored).toBeGreaterThan(pixels.width)
    const drawn = pixels.tops.filter((t) => t >= 0)
    expect(drawn.length).toBeGreaterThan(pixels.width * 0.9)
    // Rising: the line is near the bottom on the left and near the top on the right.
    const left = pixels.tops
      .slice(0, Math.floor(pixels.width / 6))
      .filter((t) => t >= 0)
    const right = pixels.tops
      .slice(-Math.floor(pixels.width / 6))
      .filter((t) => t >= 0)
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length
    expect(mean(left)).toBeGreaterThan(pixels.height * 0.6)
    expect(mean(right)).toBeLessThan(pixels.height * 0.3)
  })
})
