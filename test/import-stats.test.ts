import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import type { CommitEvent } from '../src/repo/writer.ts'
import { statsRecordKey } from '../src/stats/rkey.ts'
import { cliFor, lines, runCli } from './_cli.ts'
import {
  freePort,
  pushBlob,
  removeDir,
  startHold,
  tempDir,
  xrpc,
  type TestHold,
} from './_util.ts'

const PASSWORD = 'import-secret-42'
const STATS = ids.HoldStats
const DIDS = 60
const REPOS = 50
const BASE = Date.UTC(2025, 0, 1)

type Expected = {
  did: string
  repository: string
  pullCount: number
  pushCount: number
  lastPull?: string
  lastPush?: string
}
type StatsView = Expected

const didOf = (d: number) => `did:plc:appview${String(d).padStart(16, '0')}`
const repoOf = (r: number) => (r % 3 === 0 ? `team/app-${r}` : `app-${r}`)

const pad = (n: number, w = 2) => String(n).padStart(w, '0')
/** A time as Go's SQLite drivers write it, in the given UTC offset, with nanoseconds or not. */
const goTime = (ms: number, offsetMin: number, nanos: boolean): string => {
  const d = new Date(ms + offsetMin * 60_000)
  const sign = offsetMin < 0 ? '-' : '+'
  const off = Math.abs(offsetMin)
  const frac = nanos ? `.${pad(d.getUTCMilliseconds(), 3)}456789` : ''
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${frac}` +
    `${sign}${pad(Math.floor(off / 60))}:${pad(off % 60)}`
  )
}

/**
 * The AppView's repository_stats, with its rows in five timestamp styles, as its Go code and
 * SQLite write them; returns what the hold should show for each pair.
 */
const buildAppViewDb = (file: string): Map<string, Expected> => {
  const db = new DatabaseSync(file)
  db.exec(`
    CREATE TABLE users (did TEXT PRIMARY KEY, handle TEXT NOT NULL);
    CREATE TABLE repository_stats (
      did TEXT NOT NULL,
      repository TEXT NOT NULL,
      pull_count INTEGER NOT NULL DEFAULT 0,
      last_pull TIMESTAMP,
      push_count INTEGER NOT NULL DEFAULT 0,
      last_push TIMESTAMP,
      PRIMARY KEY (did, repository),
      FOREIGN KEY (did) REFERENCES users(did) ON DELETE CASCADE
    );`)
  const insert = db.prepare(
    'INSERT INTO repository_stats (did, repository, pull_count, last_pull, push_count, last_push) VALUES (?, ?, ?, ?, ?, ?)',
  )
  const expected = new Map<string, Expected>()
  db.exec('BEGIN')
  const user = db.prepare('INSERT INTO users (did, handle) VALUES (?, ?)')
  for (let d = 0; d < DIDS; d++) user.run(didOf(d), `user${d}.example.com`)
  user.run('alice', 'alice.example.com')
  for (let d = 0; d < DIDS; d++) {
    for (let r = 0; r < REPOS; r++) {
      const i = d * REPOS + r
      const did = didOf(d)
      const repository = repoOf(r)
      const pullMs = BASE + i * 61_000 + (i % 1000)
      const pushMs = BASE + i * 17_000
      const want: Expected = {
        did,
        repository,
        pullCount: (i * 7919) % 100_000,
        pushCount: i % 13,
      }
      let lastPull: string | null = null
      let lastPush: string | null = null
      switch (i % 5) {
        case 0: // mattn/go-sqlite3's default format
          lastPull = goTime(pullMs, 0, true)
          lastPush = goTime(pushMs, 0, false)
          want.lastPull = new Date(pullMs).toISOString()
          want.lastPush = new Date(pushMs - (pushMs % 1000)).toISOString()
          break
        case 1: // a local offset
          lastPull = goTime(pullMs, -300, true)
          want.lastPull = new Date(pullMs).toISOString()
          break
        case 2: // RFC 3339
          lastPull = new Date(pullMs).toISOString()
          lastPush = new Date(pushMs).toISOString().replace('.000Z', '+00:00')
          want.lastPull = new Date(pullMs).toISOString()
          want.lastPush = new Date(pushMs).toISOString()
          break
        case 3: // SQLite's CURRENT_TIMESTAMP: UTC, no fraction, no zone
          lastPull = new Date(pullMs)
            .toISOString()
            .slice(0, 19)
            .replace('T', ' ')
          want.lastPull = new Date(pullMs - (pullMs % 1000)).toISOString()
          break
        case 4: // never pulled; Go's zero time for an unset push
          lastPush = '0001-01-01 00:00:00+00:00'
          break
      }
      insert.run(
        did,
        repository,
        want.pullCount,
        lastPull,
        want.pushCount,
        lastPush,
      )
      expected.set(`${did} ${repository}`, want)
    }
  }
  // Rows the import must skip, each for one reason.
  insert.run('alice', 'web', 1, null, 0, null)
  insert.run(didOf(0), 'My App', 1, null, 0, null)
  insert.run(didOf(0), 'negative', -5, null, 0, null)
  insert.run(didOf(0), 'fraction', 1.5, null, 0, null)
  insert.run(didOf(0), 'badtime', 1, 'last tuesday', 0, null)
  db.exec('COMMIT')
  db.close()
  return expected
}

describe('import-stats: the AppView’s counts as baselines', () => {
  let h: TestHold
  let cli: ReturnType<typeof cliFor>
  let dir: string
  let appviewDb: string
  let expected: Map<string, Expected>
  const commits: CommitEvent[] = []

  const getStats = async (did: string, repo: string) => {
    const res = await xrpc<StatsView>(h.url, ids.HoldGetStats, {
      did,
      repo,
    })
    expect(res.status).toBe(200)
    // HOLD_COUNT_SOURCE's default, named in every answer; the counts are the rest.
    const { countSource, ...view } = res.body as StatsView & {
      countSource: string
    }
    expect(countSource).toBe('blob')
    return view
  }
  const getRecord = (did: string, repo: string) =>
    xrpc<{ value: Record<string, unknown> }>(h.url, ids.RepoGetRecord, {
      repo: h.did,
      collection: STATS,
      rkey: statsRecordKey(did, repo),
    })
  const listAll = async (did: string) => {
    const all: StatsView[] = []
    let cursor: string | undefined
    do {
      const page = await xrpc<{ stats: StatsView[]; cursor?: string }>(
        h.url,
        ids.HoldListStats,
        { did, limit: 20, cursor },
      )
      expect(page.status).toBe(200)
      all.push(...page.body.stats)
      cursor = page.body.cursor
    } while (cursor)
    return all
  }
  const rev = async () =>
    (
      await xrpc<{ rev: string }>(h.url, ids.SyncGetLatestCommit, {
        did: h.did,
      })
    ).body.rev
  /** Every 97th pair: a spread over DIDs, repositories and timestamp styles. */
  const sample = () => [...expected.values()].filter((_, i) => i % 97 === 0)

  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_ADMIN_PASSWORD: PASSWORD, HOLD_STATS_FLUSH_MS: '3600000' },
    })
    h.hold.ctx.writer.onCommit((evt) => commits.push(evt))
    cli = cliFor(h.url, PASSWORD)
    dir = await tempDir()
    appviewDb = join(dir, 'appview.db')
    expected = buildAppViewDb(appviewDb)
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
    await removeDir(dir)
  })

  it('imports 3000 rows from the AppView’s SQLite file, reports the invalid ones by row, and shows the counts in getStats, listStats and, after a flush, the records', async () => {
    const r = await cli(['import-stats', appviewDb])
    expect(r.code).toBe(1)
    const n = DIDS * REPOS
    expect(lines(r.stdout)).toEqual([
      `read ${n + 5} rows from ${appviewDb} (SQLite, table repository_stats)`,
      `imported ${n} rows into ${h.url}: ${n} pairs changed, 0 unchanged`,
      'skipped 5 rows:',
      '       1  did is not a DID',
      '       1  repository is not an OCI repository name (lowercase letters and digits, separated by . _ - and /)',
      '       1  pull_count is negative',
      '       1  pull_count is not a whole number',
      '       1  last_pull is not an RFC 3339 or SQLite timestamp',
    ])
    const d0 = didOf(0)
    expect(lines(r.stderr)).toEqual([
      `skipped row ${n + 1} (alice web): did is not a DID: "alice"`,
      `skipped row ${n + 2} (${d0} My App): repository is not an OCI repository name (lowercase letters and digits, separated by . _ - and /): "My App"`,
      `skipped row ${n + 3} (${d0} negative): pull_count is negative: -5`,
      `skipped row ${n + 4} (${d0} fraction): pull_count is not a whole number: 1.5`,
      `skipped row ${n + 5} (${d0} badtime): last_pull is not an RFC 3339 or SQLite timestamp: "last tuesday" (expected e.g. 2025-01-15T10:00:00Z or 2025-01-15 10:00:00.123+00:00)`,
      `atcr-hold: 5 of ${n + 5} rows were skipped, so the import is incomplete (the ${n} valid rows are in); fix them and import again, or pass --allow-skips to accept`,
    ])
    // Nothing of a skipped row got in.
    expect(await getStats(d0, 'negative')).toMatchObject({
      pullCount: 0,
      pushCount: 0,
    })
    expect(await getStats(d0, 'badtime')).toMatchObject({
      pullCount: 0,
      pushCount: 0,
    })

    for (const want of sample())
      expect(await getStats(want.did, want.repository)).toEqual(want)
    const listed = await listAll(didOf(7))
    expect(listed).toEqual(
      [...expected.values()]
        .filter((e) => e.did === didOf(7))
        .sort((a, b) => (a.repository < b.repository ? -1 : 1)),
    )

    // Pairs that only have a baseline get records at the next flush, 200 per commit.
    const before = commits.length
    expect(await h.hold.ctx.stats.flush()).toMatchObject({
      records: n,
      commits: n / 200,
    })
    expect(commits.length - before).toBe(n / 200)
    expect(h.hold.ctx.reader.counts()[STATS]).toBe(n)
    for (const want of sample()) {
      const rec = await getRecord(want.did, want.repository)
      expect(rec.status).toBe(200)
      const { $type, ownerDid, createdAt, updatedAt, ...value } = rec.body.value
      expect(value).toEqual(want)
      expect({ $type, ownerDid }).toEqual({ $type: STATS, ownerDid: want.did })
      expect(Date.parse(createdAt as string)).toBeLessThanOrEqual(
        Date.parse(updatedAt as string),
      )
      h.hold.ctx.lexicons.assertValidRecord(STATS, rec.body.value)
    }
  })

  it('importing the same file again changes nothing: the same getStats, and the next flush makes no commit', async () => {
    const headBefore = await rev()
    const commitsBefore = commits.length
    const r = await cli(['import-stats', appviewDb, '--allow-skips'])
    expect(r.code).toBe(0)
    expect(lines(r.stdout)[1]).toBe(
      `imported ${DIDS * REPOS} rows into ${h.url}: 0 pairs changed, ${DIDS * REPOS} unchanged`,
    )
    expect(await h.hold.ctx.stats.flush()).toMatchObject({
      records: 0,
      commits: 0,
    })
    expect(commits.length).toBe(commitsBefore)
    expect(await rev()).toBe(headBefore)
    for (const want of sample())
      expect(await getStats(want.did, want.repository)).toEqual(want)
  })

  it('adds what the hold counts itself (real getBlob pulls and uploads) on top of the baseline, and a re-import keeps those counts', async () => {
    const did = didOf(3)
    const repo = repoOf(10)
    const base = expected.get(`${did} ${repo}`)!
    const started = new Date().toISOString()
    const { digest } = await pushBlob(h.url, randomBytes(1000), { did, repo })
    for (let i = 0; i < 3; i++) {
      const res = await fetch(
        `${h.url}/xrpc/${ids.SyncGetBlob}?did=${did}&cid=${digest}&repo=${repo}`,
      )
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
    const now = await getStats(did, repo)
    expect(now).toMatchObject({
      pullCount: base.pullCount + 3,
      pushCount: base.pushCount + 1,
    })
    // The later of the baseline's and the hold's own times.
    expect(now.lastPull! >= started).toBe(true)
    expect(now.lastPush! >= started).toBe(true)

    await h.hold.ctx.stats.flush()
    expect((await getRecord(did, repo)).body.value).toMatchObject({
      pullCount: base.pullCount + 3,
      pushCount: base.pushCount + 1,
      lastPull: now.lastPull,
    })
    const r = await cli(['import-stats', appviewDb])
    expect(lines(r.stdout)[1]).toContain(': 0 pairs changed,')
    expect(await getStats(did, repo)).toEqual(now)
  })

  it('a newer export updates the baselines of the pairs it names and leaves the hold’s own counts', async () => {
    const did = didOf(3)
    const db = new DatabaseSync(appviewDb)
    db.prepare(
      "UPDATE repository_stats SET pull_count = pull_count + 100, last_pull = '2025-06-01 12:00:00.5+00:00' WHERE did = ?",
    ).run(did)
    db.close()
    for (const e of expected.values()) {
      if (e.did === did) {
        e.pullCount += 100
        e.lastPull = '2025-06-01T12:00:00.500Z'
      }
    }
    const before = commits.length
    const r = await cli(['import-stats', appviewDb, '--json', '--allow-skips'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({
      format: 'sqlite',
      read: DIDS * REPOS + 5,
      imported: DIDS * REPOS,
      changed: REPOS,
      unchanged: DIDS * REPOS - REPOS,
      skipped: 5,
    })
    const own = repoOf(10)
    for (const e of [...expected.values()].filter((x) => x.did === did)) {
      const view = await getStats(did, e.repository)
      expect(view.pullCount).toBe(e.pullCount + (e.repository === own ? 3 : 0))
      if (e.repository !== own) expect(view).toEqual(e)
    }
    expect(await h.hold.ctx.stats.flush()).toMatchObject({
      records: REPOS,
      commits: 1,
    })
    expect(commits.length - before).toBe(1)
    expect((await getRecord(did, repoOf(11))).body.value).toMatchObject({
      pullCount: expected.get(`${did} ${repoOf(11)}`)!.pullCount,
      lastPull: '2025-06-01T12:00:00.500Z',
    })
  })

  it('stats reset removes a DID’s imported baselines and records too, and importing again brings them back', async () => {
    const did = didOf(5)
    const r = await cli(['stats', 'reset', did, '--yes'])
    expect(lines(r.stdout)).toEqual([
      `reset every repository of ${did}: ${REPOS} counters removed, ${REPOS} records deleted in 1 commits`,
    ])
    expect(await listAll(did)).toEqual([])
    expect((await getRecord(did, repoOf(0))).status).toBe(404)
    expect(await h.hold.ctx.stats.flush()).toMatchObject({ records: 0 })

    const again = await cli(['import-stats', appviewDb])
    expect(lines(again.stdout)[1]).toContain(`: ${REPOS} pairs changed,`)
    expect(await listAll(did)).toHaveLength(REPOS)
    await h.hold.ctx.stats.flush()
    expect((await getRecord(did, repoOf(0))).body.value).toMatchObject(
      expected.get(`${did} ${repoOf(0)}`)!,
    )
  })

  it('reads the same fields from JSON lines and CSV, and reports bad lines by line number', async () => {
    const a = 'did:plc:jsonlines00000000000000'
    const b = 'did:web:csv.example.com'
    const jsonl = join(dir, 'stats.jsonl')
    await writeFile(
      jsonl,
      [
        JSON.stringify({
          did: a,
          repository: 'one',
          pull_count: 11,
          push_count: 2,
          last_pull: '2025-02-03 04:05:06.789123+00:00',
          last_push: null,
        }),
        JSON.stringify({
          did: a,
          repository: 'two',
          pullCount: '12',
          pushCount: '0',
          lastPush: '2025-02-03T04:05:06Z',
        }),
        '',
        '{"did": "did:plc:broken", ',
        JSON.stringify({
          did: a,
          repository: 'three',
          pull_count: 1.25,
          push_count: 0,
        }),
        JSON.stringify({
          did: a,
          repository: 'one',
          pull_count: 99,
          push_count: 0,
        }),
      ].join('\n') + '\n',
    )
    const j = await cli(['import-stats', jsonl])
    expect(j.code).toBe(1)
    expect(lines(j.stderr)).toEqual([
      'skipped line 4: is not valid JSON',
      'skipped line 5: pull_count is not a whole number: 1.25',
      'skipped line 6: names the same did and repository as line 1',
      'atcr-hold: 3 of 5 rows were skipped, so the import is incomplete (the 2 valid rows are in); fix them and import again, or pass --allow-skips to accept',
    ])
    expect(lines(j.stdout).slice(0, 2)).toEqual([
      `read 5 rows from ${jsonl} (JSON lines)`,
      `imported 2 rows into ${h.url}: 2 pairs changed, 0 unchanged`,
    ])
    expect(await getStats(a, 'one')).toEqual({
      did: a,
      repository: 'one',
      pullCount: 11,
      pushCount: 2,
      lastPull: '2025-02-03T04:05:06.789Z',
    })
    expect(await getStats(a, 'two')).toEqual({
      did: a,
      repository: 'two',
      pullCount: 12,
      pushCount: 0,
      lastPush: '2025-02-03T04:05:06.000Z',
    })

    // As `sqlite3 -csv -header` writes it, with a byte order mark and CRLF line ends.
    const csv = join(dir, 'stats.csv')
    await writeFile(
      csv,
      '\uFEFFdid,repository,pull_count,push_count,last_pull,last_push\r\n' +
        `${b},web,40,4,"2025-01-15 10:00:00.123456789+00:00",\r\n` +
        `"${b}","tools/builder","41","0",,"2025-01-16 08:30:00"\r\n` +
        `${b},"a,b",1,1,,\r\n` +
        `${b},short,1\r\n` +
        `${b},"unclosed,1,1,,\r\n`,
    )
    const c = await cli(['import-stats', csv, '--json', '--allow-skips'])
    expect(c.code).toBe(0)
    expect(lines(c.stderr)).toEqual([
      'skipped line 4: repository is not an OCI repository name (lowercase letters and digits, separated by . _ - and /): "a,b"',
      'skipped line 5: has 3 fields, the header has 6',
      'skipped line 6: a quoted field is not closed before the end of the file',
    ])
    expect(JSON.parse(c.stdout)).toEqual({
      file: `${csv} (CSV)`,
      format: 'csv',
      dryRun: false,
      read: 5,
      imported: 2,
      valid: 2,
      changed: 2,
      unchanged: 0,
      skipped: 3,
      reasons: {
        'repository is not an OCI repository name (lowercase letters and digits, separated by . _ - and /)': 1,
        'has 3 fields, the header has 6': 1,
        'a quoted field is not closed before the end of the file': 1,
      },
    })
    expect(await listAll(b)).toEqual([
      {
        did: b,
        repository: 'tools/builder',
        pullCount: 41,
        pushCount: 0,
        lastPush: '2025-01-16T08:30:00.000Z',
      },
      {
        did: b,
        repository: 'web',
        pullCount: 40,
        pushCount: 4,
        lastPull: '2025-01-15T10:00:00.123Z',
      },
    ])
  })

  it('checks a file without a hold on --dry-run, and fails in one line for a file it cannot read', async () => {
    const port = await freePort()
    const dry = await runCli(['import-stats', appviewDb, '--dry-run'], {
      HOLD_URL: `http://127.0.0.1:${port}`,
    })
    expect(dry.code).toBe(1)
    expect(lines(dry.stdout).slice(0, 2)).toEqual([
      `read ${DIDS * REPOS + 5} rows from ${appviewDb} (SQLite, table repository_stats)`,
      `${DIDS * REPOS} rows are valid (dry run: nothing was sent)`,
    ])
    expect(lines(dry.stderr)).toHaveLength(6)
    expect(lines(dry.stderr)[5]).toBe(
      `atcr-hold: 5 of ${DIDS * REPOS + 5} rows would be skipped; fix them, or pass --allow-skips to import without them`,
    )

    const missing = await cli(['import-stats', join(dir, 'nope.db')])
    expect(missing.code).toBe(1)
    expect(lines(missing.stderr)).toEqual([
      expect.stringMatching(/^atcr-hold: cannot read .*nope\.db: ENOENT/),
    ])
    const noTable = await cli([
      'import-stats',
      appviewDb,
      '--table',
      'manifests',
    ])
    expect(lines(noTable.stderr)).toEqual([
      `atcr-hold: ${appviewDb} has no table manifests (tables: repository_stats, users)`,
    ])
    const wrongPassword = await cli(['import-stats', appviewDb], {
      HOLD_ADMIN_PASSWORD: 'nope',
    })
    expect(wrongPassword.code).toBe(1)
    expect(lines(wrongPassword.stderr)).toEqual([
      expect.stringContaining('refused the admin password (401'),
    ])
  })
})
