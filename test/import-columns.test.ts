import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { JsonArraySplitter } from '../src/cli/json-array.ts'
import { normalizeTimestamp } from '../src/stats/baseline.ts'
import { cliFor, lines } from './_cli.ts'
import { removeDir, startHold, tempDir, xrpc, type TestHold } from './_util.ts'

const PASSWORD = 'columns-secret-17'
const NOW = Date.parse('2026-06-01T00:00:00Z')
const EXPECTED =
  'expected did, repository, pull_count, push_count, and optionally last_pull, last_push'

type Row = {
  did: string
  repository: string
  pull_count: number
  last_pull: string | null
  push_count: number
  last_push: string | null
}

/** What `sqlite3 -json db "SELECT * FROM repository_stats"` writes: one array, a row a line. */
const sqliteJson = (rows: object[]) =>
  rows.length === 0
    ? ''
    : `[${rows.map((r) => JSON.stringify(r)).join(',\n')}]\n`

describe('import-stats: columns, sqlite3 -json and exit codes', () => {
  let h: TestHold
  let dir: string
  let cli: ReturnType<typeof cliFor>

  /** getStats without countSource, which is HOLD_COUNT_SOURCE's default in every answer. */
  const stats = async (did: string, repo: string) => {
    const { countSource, ...view } = (
      await xrpc(h.url, ids.HoldGetStats, { did, repo })
    ).body
    expect(countSource).toBe('blob')
    return view
  }
  /** Counters and baselines on the hold: an import that stopped must have sent nothing. */
  const held = () => h.hold.ctx.stats.summary()

  beforeAll(async () => {
    h = await startHold({
      env: { HOLD_ADMIN_PASSWORD: PASSWORD, HOLD_STATS_FLUSH_MS: '3600000' },
    })
    cli = cliFor(h.url, PASSWORD)
    dir = await tempDir()
  })
  afterAll(async () => {
    await h.stop()
    await removeDir(h.dataDir)
    await removeDir(dir)
  })

  it('stops on count columns it does not know (pulls, pushes) before sending anything, naming what it expects and what it found', async () => {
    const did = 'did:plc:columnspulls000000000'
    const csv = join(dir, 'renamed.csv')
    await writeFile(csv, `did,repository,pulls,pushes\n${did},web,1542,3\n`)
    const before = held()
    const r = await cli(['import-stats', csv])
    expect(r.code).toBe(1)
    expect(lines(r.stderr)).toEqual([
      `atcr-hold: the CSV header (line 1) does not have the expected columns: unknown pulls, pushes; missing pull_count, push_count (${EXPECTED}; found did, repository, pulls, pushes)`,
    ])
    expect(r.stdout).toBe('')
    expect(held()).toEqual(before)
    expect(await stats(did, 'web')).toMatchObject({ pullCount: 0 })

    // The same in a JSON file and in a SQLite table.
    const jsonl = join(dir, 'renamed.jsonl')
    await writeFile(
      jsonl,
      JSON.stringify({ did, repository: 'web', pulls: 1542, pushes: 3 }) + '\n',
    )
    const j = await cli(['import-stats', jsonl])
    expect(j.code).toBe(1)
    expect(lines(j.stderr)).toEqual([
      `atcr-hold: the JSON object on line 1 does not have the expected columns: unknown pulls, pushes; missing pull_count, push_count (${EXPECTED}; found did, repository, pulls, pushes)`,
    ])
    const file = join(dir, 'renamed.db')
    const db = new DatabaseSync(file)
    db.exec(
      'CREATE TABLE repository_stats (id INTEGER PRIMARY KEY, did TEXT, repository TEXT, pulls INTEGER, push_count INTEGER)',
    )
    db.prepare(
      'INSERT INTO repository_stats (did, repository, pulls, push_count) VALUES (?, ?, ?, ?)',
    ).run(did, 'web', 1542, 3)
    db.close()
    const s = await cli(['import-stats', file])
    expect(s.code).toBe(1)
    expect(lines(s.stderr)).toEqual([
      `atcr-hold: table repository_stats in ${file} does not have the expected columns: unknown id, pulls; missing pull_count (${EXPECTED}; found id, did, repository, pulls, push_count); for another table, export the expected columns with sqlite3 -json`,
    ])
    expect(held()).toEqual(before)
  })

  it('refuses a header that names a column twice, or lacks one', async () => {
    const csv = join(dir, 'twice.csv')
    await writeFile(
      csv,
      'did,repository,pull_count,pullCount,push_count\ndid:plc:x,web,1,2,0\n',
    )
    const twice = await cli(['import-stats', csv, '--dry-run'])
    expect(twice.code).toBe(1)
    expect(lines(twice.stderr)[0]).toContain(
      'does not have the expected columns: named pull_count twice (pull_count, pullCount)',
    )
    await writeFile(csv, 'did,repository,pull_count\ndid:plc:x,web,1\n')
    const missing = await cli(['import-stats', csv, '--dry-run'])
    expect(missing.code).toBe(1)
    expect(lines(missing.stderr)[0]).toContain(
      'does not have the expected columns: missing push_count (',
    )
  })

  it('imports what sqlite3 -json writes, with Go time formats, and skips a later row whose columns differ', async () => {
    const did = 'did:plc:columnsjsonarray0000'
    const rows: (Row | Record<string, unknown>)[] = [
      {
        did,
        repository: 'web',
        pull_count: 1542,
        last_pull: '2025-01-15 10:00:00.123456789+00:00',
        push_count: 3,
        last_push: null,
      },
      {
        did,
        repository: 'tools/cli',
        pull_count: 7,
        last_pull: '2025-01-15 10:00:00.123456789 +0000 UTC m=+0.000100001',
        push_count: 1,
        last_push: '2025-01-16T08:30:00.5-05:00',
      },
      {
        did,
        repository: 'local',
        pull_count: 2,
        last_pull: '2025-03-01 12:00:00 +0300 +03',
        push_count: 0,
        last_push: '2025-03-01T09:00:00.999999999Z',
      },
      { did, repository: 'odd', pulls: 5, push_count: 0 },
    ]
    const file = join(dir, 'stats.json')
    await writeFile(file, sqliteJson(rows))
    const r = await cli(['import-stats', file])
    expect(r.code).toBe(1)
    expect(lines(r.stdout)).toEqual([
      `read 4 rows from ${file} (JSON array)`,
      `imported 3 rows into ${h.url}: 3 pairs changed, 0 unchanged`,
      'skipped 1 rows:',
      '       1  does not have the expected columns',
    ])
    expect(lines(r.stderr)).toEqual([
      'skipped line 4: does not have the expected columns: unknown pulls; missing pull_count',
      'atcr-hold: 1 of 4 rows were skipped, so the import is incomplete (the 3 valid rows are in); fix them and import again, or pass --allow-skips to accept',
    ])
    expect(await stats(did, 'web')).toEqual({
      did,
      repository: 'web',
      pullCount: 1542,
      pushCount: 3,
      lastPull: '2025-01-15T10:00:00.123Z',
    })
    expect(await stats(did, 'tools/cli')).toEqual({
      did,
      repository: 'tools/cli',
      pullCount: 7,
      pushCount: 1,
      lastPull: '2025-01-15T10:00:00.123Z',
      lastPush: '2025-01-16T13:30:00.500Z',
    })
    expect(await stats(did, 'local')).toMatchObject({
      lastPull: '2025-03-01T09:00:00.000Z',
      lastPush: '2025-03-01T09:00:00.999Z',
    })

    // --allow-skips accepts the skipped row: exit 0, and the same again changes nothing.
    const again = await cli(['import-stats', file, '--allow-skips', '--json'])
    expect(again.code).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({
      format: 'json',
      read: 4,
      imported: 3,
      changed: 0,
      unchanged: 3,
      skipped: 1,
    })
    expect(lines(again.stderr)).toEqual([
      'skipped line 4: does not have the expected columns: unknown pulls; missing pull_count',
    ])
  })

  it('exits 0 for a clean file, and 1 on a dry run that would skip rows', async () => {
    const did = 'did:plc:columnsclean000000000'
    const file = join(dir, 'clean.data')
    const rows: Row[] = [
      {
        did,
        repository: 'a',
        pull_count: 1,
        last_pull: null,
        push_count: 0,
        last_push: null,
      },
    ]
    await writeFile(file, sqliteJson(rows))
    const ok = await cli(['import-stats', file])
    expect(ok.code).toBe(0)
    expect(lines(ok.stdout)).toContain('skipped none')
    expect(ok.stderr).toBe('')

    await writeFile(
      file,
      sqliteJson([...rows, { ...rows[0], repository: 'B', pull_count: -1 }]),
    )
    const dry = await cli(['import-stats', file, '--dry-run'])
    expect(dry.code).toBe(1)
    expect(lines(dry.stderr).at(-1)).toBe(
      'atcr-hold: 1 of 2 rows would be skipped; fix them, or pass --allow-skips to import without them',
    )
    const dryOk = await cli([
      'import-stats',
      file,
      '--dry-run',
      '--allow-skips',
    ])
    expect(dryOk.code).toBe(0)
  })

  it('reads an empty sqlite3 -json export (no rows: no output) as no rows', async () => {
    const file = join(dir, 'empty.json')
    await writeFile(file, '')
    const r = await cli(['import-stats', file, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ format: 'json', read: 0 })
  })
})

describe('JSON array splitting', () => {
  const split = (text: string, size = text.length) => {
    const s = new JsonArraySplitter()
    const out = []
    for (let i = 0; i < text.length; i += size) {
      out.push(...s.push(text.slice(i, i + size)))
    }
    out.push(...s.end())
    return out
  }

  it('splits elements whatever the chunk boundaries, with brackets, commas and escaped quotes inside strings', () => {
    const text =
      '\uFEFF[{"did":"a","repository":"x],{y","n":[1,2]},\n' +
      ' {"did":"b\\"]","repository":"z"} ,\n' +
      '7,\n' +
      '"s,t"]\n'
    const whole = split(text)
    expect(whole).toEqual([
      { line: 1, text: '{"did":"a","repository":"x],{y","n":[1,2]}' },
      { line: 2, text: '{"did":"b\\"]","repository":"z"}' },
      { line: 3, text: '7' },
      { line: 4, text: '"s,t"' },
    ])
    for (let size = 1; size <= 7; size++) {
      expect(split(text, size), `chunks of ${size}`).toEqual(whole)
    }
  })

  it('reports an array cut short, a missing comma and text after the end, by line', () => {
    expect(split('[{"a":1},\n{"a":2')).toEqual([
      { line: 1, text: '{"a":1}' },
      {
        line: 2,
        error: 'the JSON array is not closed before the end of the file',
      },
    ])
    expect(split('[{"a":1}\n{"a":2}]\nmore')).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, error: 'has no comma before this row' },
      { line: 2, text: '{"a":2}' },
      { line: 3, error: 'has text after the end of the JSON array' },
    ])
    expect(split('[]\n')).toEqual([])
    expect(split('{"a":1}')).toEqual([
      { line: 1, error: 'a JSON array starts with [' },
    ])
  })
})

describe("Go's time formats", () => {
  it.each([
    // time.RFC3339Nano
    ['2025-01-15T10:00:00.123456789Z', '2025-01-15T10:00:00.123Z'],
    ['2025-01-15T10:00:00.123456789-07:00', '2025-01-15T17:00:00.123Z'],
    ['2025-01-15T10:00:00+05:30', '2025-01-15T04:30:00.000Z'],
    // '2006-01-02 15:04:05.999999999-07:00', with and without a fraction
    ['2025-01-15 10:00:00.5-07:00', '2025-01-15T17:00:00.500Z'],
    ['2025-01-15 10:00:00Z', '2025-01-15T10:00:00.000Z'],
    // time.Time.String(), with and without the monotonic clock reading
    ['2025-01-15 10:00:00.123456789 +0000 UTC', '2025-01-15T10:00:00.123Z'],
    [
      '2025-01-15 10:00:00.123456789 +0000 UTC m=+0.000100001',
      '2025-01-15T10:00:00.123Z',
    ],
    [
      '2025-01-15 05:00:00 -0500 EST m=+3.000000001',
      '2025-01-15T10:00:00.000Z',
    ],
    ['2025-01-15 13:00:00 +0300 +03', '2025-01-15T10:00:00.000Z'],
    ['2025-01-15 10:00:00 -0330 -0330 m=-1.5', '2025-01-15T13:30:00.000Z'],
  ])('reads %s as %s', (raw, want) => {
    expect(normalizeTimestamp(raw, NOW)).toBe(want)
  })

  it.each([
    '2025-01-15 10:00:00 +0000 UTC m=',
    '2025-01-15 10:00:00 +0000 UTC m=+abc',
    '2025-01-15 10:00:00 +0000 utc',
  ])('refuses %s', (raw) => {
    expect(normalizeTimestamp(raw, NOW)).toBeInstanceOf(Error)
  })
})
