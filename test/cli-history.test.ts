import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DAY_MS, dayOf, dayString } from '../src/stats/days.ts'
import { cliFor, lines, type CliResult } from './_cli.ts'
import { plcDid } from './_stats.ts'
import { removeDir, startHold, type TestHold } from './_util.ts'

const PASSWORD = 'history-op-secret'
const ALICE = plcDid('clihistalice')
const BOB = plcDid('clihistbob')

const ok = (r: CliResult): string[] => {
  expect(r.stderr, r.stdout).toBe('')
  expect(r.code).toBe(0)
  return lines(r.stdout)
}

describe('stats history, trending and export in the CLI', () => {
  let h: TestHold
  let cli: ReturnType<typeof cliFor>
  const today = dayOf(Date.now())
  const yesterday = dayString(today - 1)

  beforeAll(async () => {
    h = await startHold({ env: { HOLD_ADMIN_PASSWORD: PASSWORD } })
    cli = cliFor(h.url, PASSWORD)
    const noon = today * DAY_MS + DAY_MS / 2
    const stats = h.hold.ctx.stats
    for (let i = 0; i < 5; i++)
      stats.countPull(ALICE, 'web', noon - DAY_MS, `did:plc:c${i}`)
    for (let i = 0; i < 3; i++)
      stats.countPull(ALICE, 'web', Math.min(noon, Date.now()), `did:plc:c${i}`)
    stats.countPull(BOB, 'db', Date.now())
    stats.persist()
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
  })

  it('stats history prints a table of days with totals, and --json the answer', async () => {
    const out = ok(
      await cli(['stats', 'history', ALICE, 'web', '--since', yesterday]),
    )
    expect(out[0]).toMatch(/^day\s+pulls\s+pushes\s+unique clients$/)
    expect(out[1]).toMatch(new RegExp(`^${yesterday}\\s+5\\s+0\\s+5$`))
    expect(out[2]).toMatch(new RegExp(`^${dayString(today)}\\s+3\\s+0\\s+3$`))
    expect(out[3]).toBe('2 days, 8 pulls, 0 pushes')
    const body = JSON.parse(
      ok(
        await cli([
          'stats',
          'history',
          ALICE,
          'web',
          '--since',
          yesterday,
          '--json',
        ]),
      ).join('\n'),
    )
    expect(body.days.map((d: { pulls: number }) => d.pulls)).toEqual([5, 3])
  })

  it('stats trending ranks by pulls in the window', async () => {
    const one = JSON.parse(
      ok(await cli(['stats', 'trending', '--days', '1', '--json'])).join('\n'),
    )
    expect(
      one.repositories.map((r: { repository: string; pulls: number }) => [
        r.repository,
        r.pulls,
      ]),
    ).toEqual([
      ['web', 3],
      ['db', 1],
    ])
    const text = ok(await cli(['stats', 'trending', '--days', '2']))
    expect(text[0]).toMatch(
      /^did\s+repository\s+pulls \(2d\)\s+pulls\s+pushes$/,
    )
    expect(text[1]).toMatch(new RegExp(`^${ALICE}\\s+web\\s+8\\s+8\\s+0$`))
  })

  it('stats export writes CSV or NDJSON of every day row from --since', async () => {
    const csv = ok(await cli(['stats', 'export', '--since', yesterday]))
    expect(csv).toEqual([
      'did,repository,day,pulls,pushes,unique_clients',
      `${ALICE},web,${yesterday},5,0,5`,
      `${ALICE},web,${dayString(today)},3,0,3`,
      `${BOB},db,${dayString(today)},1,0,`,
    ])
    const nd = ok(
      await cli([
        'stats',
        'export',
        '--since',
        dayString(today),
        '--format',
        'ndjson',
      ]),
    )
    expect(nd.map((l) => JSON.parse(l))).toEqual(
      expect.arrayContaining([
        {
          did: ALICE,
          repository: 'web',
          day: dayString(today),
          pulls: 3,
          pushes: 0,
          uniqueClients: 3,
        },
        {
          did: BOB,
          repository: 'db',
          day: dayString(today),
          pulls: 1,
          pushes: 0,
        },
      ]),
    )
    expect(nd).toHaveLength(2)
  })

  it('refuses bad options with a usage error (exit 2), and a bad export call with a 400', async () => {
    for (const args of [
      ['stats', 'history', ALICE, 'web', '--since', '2026-2-1'],
      ['stats', 'trending', '--days', '31'],
      ['stats', 'trending', '--limit', '0'],
      ['stats', 'export'],
      ['stats', 'export', '--since', yesterday, '--format', 'xml'],
    ]) {
      const r = await cli(args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stdout).toBe('')
      expect(lines(r.stderr)).toHaveLength(1)
    }
    const auth = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`
    for (const query of [
      '',
      'since=yesterday',
      `since=${yesterday}&cursor=!!`,
      `since=${yesterday}&limit=0`,
    ]) {
      const res = await fetch(new URL(`/admin/stats/history?${query}`, h.url), {
        headers: { authorization: auth },
      })
      expect(res.status, query).toBe(400)
      expect(((await res.json()) as { error: string }).error).toBe(
        'InvalidRequest',
      )
    }
  })
})
