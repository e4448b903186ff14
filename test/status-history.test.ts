import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { renderStatusPage, sparkline } from '../src/api/status-page.ts'
import { DAY_MS } from '../src/stats/days.ts'
import { identity, setHandle } from './_identity.ts'
import {
  removeDir,
  startHold,
  TEST_OWNER,
  waitFor,
  type TestHold,
} from './_util.ts'

const OTHER = 'did:plc:statushistother00000000000'
const NAMELESS = 'did:plc:statushistnameless00000000'

const valuesOf = (html: string, id: string): number[] => {
  const m = new RegExp(`id="${id}"[^>]*data-values="([0-9,]*)"`).exec(html)
  expect(m, id).not.toBeNull()
  return m![1].split(',').map(Number)
}

describe('the status page with daily history', () => {
  let h: TestHold
  const page = async () => (await fetch(`${h.url}/`)).text()

  beforeAll(async () => {
    setHandle(TEST_OWNER, 'owner.test')
    await identity(OTHER)
    setHandle(OTHER, 'Other.Example.COM')
    await identity(NAMELESS)
    h = await startHold()
    const stats = h.hold.ctx.stats
    const now = Date.now()
    // web: 4 pulls today, 2 three days ago, 1 forty days ago (outside the 30 days).
    for (let i = 0; i < 4; i++) stats.countPull(OTHER, 'web', now)
    for (let i = 0; i < 2; i++) stats.countPull(OTHER, 'web', now - 3 * DAY_MS)
    stats.countPull(OTHER, 'web', now - 40 * DAY_MS)
    for (let i = 0; i < 6; i++) stats.countPull(NAMELESS, 'api', now - DAY_MS)
    stats.persist()
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it("draws the hold's last 30 days and each top repository's, from the day rows", async () => {
    const html = await page()
    const daily = valuesOf(html, 'daily-chart')
    expect(daily).toHaveLength(30)
    expect(daily.slice(-4)).toEqual([2, 0, 6, 4])
    expect(daily.reduce((a, b) => a + b, 0)).toBe(12)
    const sparks = [
      ...html.matchAll(
        /<svg class="spark" role="img"[^>]*data-values="([0-9,]*)"/g,
      ),
    ].map((m) => m[1].split(',').map(Number))
    // The top table: web (7 pulls in all) then api (6).
    expect(sparks.map((v) => v.slice(-4))).toEqual([
      [2, 0, 0, 4],
      [0, 0, 6, 0],
    ])
    expect(html).toContain('12 pulls and 0 pushes')
  })

  it('shows owners by the handle their DID document names, once resolved, with the DID still shown', async () => {
    const html = await waitFor(async () => {
      const text = await page()
      return text.includes('@other.example.com') &&
        text.includes('id="owner-handle"')
        ? text
        : undefined
    })
    expect(html).toContain('>@owner.test</span>')
    expect(html).toContain(`<code id="owner-did">${TEST_OWNER}</code>`)
    expect(html).toContain(`<code>${OTHER}</code>`)
    // A DID whose document names no handle is shown by its DID alone.
    expect(html).toContain(`<code>${NAMELESS}</code>`)
    expect(html).not.toMatch(/@[^<]*nameless/)
  })

  it('escapes what it draws', () => {
    const svg = sparkline([1, 2, 3], '<script>x</script>')
    expect(svg).not.toContain('<script>')
    expect(svg).toContain('&lt;script&gt;')
    const html = renderStatusPage({
      did: 'did:web:h',
      handle: 'h',
      version: '1',
      owner: 'did:plc:o',
      ownerHandle: 'a"><b',
      public: true,
      allowAllCrew: false,
      countSource: 'blob',
      totals: { pairs: 1, pulls: 1, pushes: 0 },
      top: [
        {
          did: 'did:plc:o',
          repository: 'r',
          pullCount: 1,
          pushCount: 0,
          handle: '<i>',
          days: [1],
        },
      ],
      daily: [{ day: '2026-01-01', pulls: 1, pushes: 0 }],
      generatedAt: 'now',
    })
    expect(html).not.toContain('<i>')
    expect(html).not.toContain('a"><b')
  })
})
