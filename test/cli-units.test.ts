import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CsvParser, parseCsv } from '../src/cli/csv.ts'
import { Progress } from '../src/cli/progress.ts'
import {
  detectFormat,
  openSource,
  type SourceItem,
} from '../src/cli/sources.ts'
import {
  checkBaseline,
  normalizeTimestamp,
  parseCount,
} from '../src/stats/baseline.ts'
import { removeDir, tempDir } from './_util.ts'

const NOW = Date.parse('2026-06-01T00:00:00Z')

describe('CSV parser (RFC 4180)', () => {
  it('reads quoted fields with commas, doubled quotes and line breaks, and reports the line each record starts on', () => {
    const text =
      'did,repository\r\n' +
      '"did:plc:a","my,app"\r\n' +
      '\r\n' +
      'did:plc:b,"say ""hi"""\n' +
      '"did:plc:c","two\nlines"\n' +
      'did:plc:d,last'
    expect(parseCsv(text)).toEqual([
      { line: 1, fields: ['did', 'repository'] },
      { line: 2, fields: ['did:plc:a', 'my,app'] },
      { line: 4, fields: ['did:plc:b', 'say "hi"'] },
      { line: 5, fields: ['did:plc:c', 'two\nlines'] },
      { line: 7, fields: ['did:plc:d', 'last'] },
    ])
  })

  it('gives the same records whatever the chunk boundaries, including a CRLF split across chunks', () => {
    const text = '\uFEFFa,b\r\n"x\r\ny","z"""\r\n1,2\r\n,\r\n'
    const whole = parseCsv(text)
    expect(whole).toEqual([
      { line: 1, fields: ['a', 'b'] },
      { line: 2, fields: ['x\r\ny', 'z"'] },
      { line: 4, fields: ['1', '2'] },
      { line: 5, fields: ['', ''] },
    ])
    for (let size = 1; size <= 5; size++) {
      const parser = new CsvParser()
      const out = []
      for (let i = 0; i < text.length; i += size) {
        out.push(...parser.push(text.slice(i, i + size)))
      }
      out.push(...parser.end())
      expect(out, `chunks of ${size}`).toEqual(whole)
    }
  })

  it('spoils only the record with text after a closing quote, and reports an unclosed quote at the end', () => {
    expect(parseCsv('a,b\n"x"y,2\nok,3\n"open,4\n')).toEqual([
      { line: 1, fields: ['a', 'b'] },
      { line: 2, error: 'text after a closing quote' },
      { line: 3, fields: ['ok', '3'] },
      {
        line: 4,
        error: 'a quoted field is not closed before the end of the file',
      },
    ])
  })

  it('keeps a stray quote inside an unquoted field as text', () => {
    expect(parseCsv('a 5" disk,b\n')).toEqual([
      { line: 1, fields: ['a 5" disk', 'b'] },
    ])
  })
})

describe('timestamps and counts from the AppView', () => {
  it.each([
    ['2025-01-15T10:00:00Z', '2025-01-15T10:00:00.000Z'],
    ['2025-01-15T10:00:00.5+01:00', '2025-01-15T09:00:00.500Z'],
    ['2025-01-15t10:00:00.123456z', '2025-01-15T10:00:00.123Z'],
    ['2025-01-15 10:00:00.123456789+00:00', '2025-01-15T10:00:00.123Z'],
    ['2025-01-15 10:00:00.999999999-05:30', '2025-01-15T15:30:00.999Z'],
    ['2025-01-15 10:00:00', '2025-01-15T10:00:00.000Z'],
    ['2025-01-15 10:00', '2025-01-15T10:00:00.000Z'],
    ['2025-01-15 10:00:00.1 +0000 UTC', '2025-01-15T10:00:00.100Z'],
    ['2024-02-29 23:59:59+0200', '2024-02-29T21:59:59.000Z'],
  ])('normalises %s to %s', (raw, want) => {
    expect(normalizeTimestamp(raw, NOW)).toBe(want)
  })

  it.each([[null], [undefined], [''], ['0001-01-01 00:00:00+00:00']])(
    'treats %j as no timestamp (Go writes an unset time as year 1)',
    (raw) => {
      expect(normalizeTimestamp(raw, NOW)).toBeUndefined()
    },
  )

  it.each([
    ['yesterday', 'is not an RFC 3339 or SQLite timestamp'],
    ['2025-02-30 10:00:00', 'is not a real date and time'],
    ['2025-01-15 24:00:00', 'is not a real date and time'],
    ['2025-01-15T10:00:00+25:00', 'has a bad offset'],
    ['1969-12-31T23:59:59Z', 'is before 1970'],
    ['2026-06-03T00:00:00Z', 'is in the future'],
    [1736935200, 'is not a timestamp string'],
  ])('refuses %s: %s', (raw, why) => {
    const result = normalizeTimestamp(raw, NOW)
    expect(result).toBeInstanceOf(Error)
    expect((result as Error).message).toContain(why)
  })

  it('reads counts from numbers, bigints and digit strings, and refuses negative, fractional and oversized ones', () => {
    expect(parseCount(12)).toBe(12)
    expect(parseCount(12n)).toBe(12)
    expect(parseCount(' 7 ')).toBe(7)
    expect(parseCount('')).toBe(0)
    expect(parseCount(null)).toBe(0)
    expect(parseCount(undefined)).toBe(0)
    for (const [raw, why] of [
      [-1, 'is negative'],
      [-3n, 'is negative'],
      ['-2', 'is negative'],
      [1.5, 'is not a whole number'],
      ['1e3', 'is not a whole number'],
      ['abc', 'is not a whole number'],
      [2n ** 60n, 'is too large'],
      [2 ** 60, 'is too large'],
    ] as const) {
      const result = parseCount(raw)
      expect(result, String(raw)).toBeInstanceOf(Error)
      expect((result as Error).message).toContain(why)
    }
  })

  it('checks a whole row, naming the field that is wrong', () => {
    const good: Parameters<typeof checkBaseline>[0] = {
      did: 'did:plc:alice',
      repository: 'tools/builder',
      pullCount: 10n,
      pushCount: '2',
      lastPull: '2025-01-15 10:00:00.123456789+00:00',
      lastPush: null,
    }
    expect(checkBaseline(good, NOW)).toEqual({
      ok: true,
      baseline: {
        did: 'did:plc:alice',
        repository: 'tools/builder',
        pullCount: 10,
        pushCount: 2,
        lastPull: '2025-01-15T10:00:00.123Z',
      },
    })
    const reason = (over: Partial<typeof good>) => {
      const r = checkBaseline({ ...good, ...over }, NOW)
      return r.ok ? 'ok' : r.reason
    }
    expect(reason({ did: 'alice' })).toMatch(/^did is not a DID/)
    expect(reason({ did: '' })).toBe('did is missing')
    expect(reason({ repository: 'My/App' })).toMatch(
      /^repository is not an OCI repository name/,
    )
    expect(reason({ repository: 'a'.repeat(257) })).toMatch(
      /^repository is longer than 256 characters/,
    )
    expect(
      reason({
        did: `did:web:${'x'.repeat(200)}`,
        repository: 'r'.repeat(200),
      }),
    ).toMatch(/record key would exceed 512/)
    expect(reason({ pushCount: '-4' })).toBe('push_count is negative: -4')
    expect(reason({ lastPush: 'soon' })).toMatch(
      /^last_push is not an RFC 3339/,
    )
  })
})

describe('import sources', () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempDir()
  })
  afterAll(() => removeDir(dir))

  const collect = async (file: string, format?: 'csv' | 'jsonl') => {
    const source = await openSource(file, { format })
    const items: SourceItem[] = []
    for await (const item of source.items()) items.push(item)
    source.close()
    return { source, items }
  }

  it('tells SQLite, JSON lines and CSV apart by content and extension', async () => {
    const db = join(dir, 'renamed.txt')
    new DatabaseSync(db).exec('CREATE TABLE t (x)')
    await writeFile(join(dir, 'a.data'), '\n  {"did":"did:plc:a"}\n')
    await writeFile(join(dir, 'b.data'), 'did,repository\n')
    await writeFile(join(dir, 'c.jsonl'), '')
    await writeFile(join(dir, 'd.csv'), '{"looks":"like json"}\n')
    expect(await detectFormat(db)).toBe('sqlite')
    expect(await detectFormat(join(dir, 'a.data'))).toBe('jsonl')
    expect(await detectFormat(join(dir, 'b.data'))).toBe('csv')
    expect(await detectFormat(join(dir, 'c.jsonl'))).toBe('jsonl')
    expect(await detectFormat(join(dir, 'd.csv'))).toBe('csv')
    await writeFile(join(dir, 'fake.db'), 'not sqlite')
    await expect(detectFormat(join(dir, 'fake.db'))).rejects.toThrow(
      /is not a SQLite database/,
    )
    await expect(detectFormat(join(dir, 'missing.csv'))).rejects.toThrow(
      /cannot read .*missing\.csv/,
    )
  })

  it('maps snake_case and camelCase columns, numbers lines, and reports unreadable ones', async () => {
    const jsonl = join(dir, 'rows.jsonl')
    await writeFile(
      jsonl,
      [
        '{"did":"did:plc:a","repository":"x","pull_count":3,"push_count":0,"lastPull":"2025-01-01T00:00:00Z"}',
        '',
        '{"did":"did:plc:b","repo":"y","pullCount":"4","PushCount":null}',
        'not json',
        '[1,2]',
      ].join('\r\n'),
    )
    const { items } = await collect(jsonl)
    expect(items).toEqual([
      {
        where: 'line 1',
        row: {
          did: 'did:plc:a',
          repository: 'x',
          pullCount: 3,
          pushCount: 0,
          lastPull: '2025-01-01T00:00:00Z',
          lastPush: undefined,
        },
      },
      {
        where: 'line 3',
        row: {
          did: 'did:plc:b',
          repository: 'y',
          pullCount: '4',
          pushCount: null,
          lastPull: undefined,
          lastPush: undefined,
        },
      },
      { where: 'line 4', error: 'is not valid JSON' },
      { where: 'line 5', error: 'is not a JSON object' },
    ])

    const csv = join(dir, 'rows.csv')
    await writeFile(
      csv,
      'Repository,DID,Pull Count,push_count,last_pull,last_push\n' +
        'x,did:plc:a,3,1,,\n' +
        'y,did:plc:b,4\n',
    )
    const read = await collect(csv)
    expect(read.items).toEqual([
      {
        where: 'line 2',
        row: {
          did: 'did:plc:a',
          repository: 'x',
          pullCount: '3',
          pushCount: '1',
          lastPull: '',
          lastPush: '',
        },
      },
      { where: 'line 3', error: 'has 3 fields, the header has 6' },
    ])
    await writeFile(csv, 'name,count\nx,1\n')
    await expect(collect(csv)).rejects.toThrow(
      /the CSV header \(line 1\) does not have the expected columns: unknown name, count; missing did, repository, pull_count, push_count/,
    )
  })
})

describe('progress', () => {
  const fakeStream = (isTTY: boolean) => {
    const writes: string[] = []
    return {
      writes,
      stream: Object.assign(
        { write: (chunk: string) => (writes.push(chunk), true) },
        { isTTY, columns: 100 },
      ) as unknown as NodeJS.WritableStream & { isTTY: boolean },
    }
  }

  it('redraws one bar in place on a terminal, keeps logged lines above it, and erases it at the end', async () => {
    const { writes, stream } = fakeStream(true)
    const p = new Progress({
      stream,
      label: 'importing',
      total: 200,
      unit: 'rows',
    })
    p.update(50)
    expect(writes).toHaveLength(1)
    const ERASE = '\r\x1b[2K'
    expect(writes[0].startsWith(ERASE)).toBe(true)
    expect(writes[0].slice(ERASE.length)).toMatch(
      /^\[=+> +\] importing +25% {2}50\/200 rows/,
    )
    p.update(60) // within 100 ms of the last draw: skipped
    expect(writes).toHaveLength(1)
    p.log('skipped row 3: bad')
    expect(writes.slice(1, 3)).toEqual([ERASE, 'skipped row 3: bad\n'])
    expect(writes[3].startsWith(ERASE)).toBe(true)
    expect(writes[3].slice(ERASE.length)).toMatch(/^\[=+> +\] importing +30%/)
    expect(writes).toHaveLength(4)
    await new Promise((r) => setTimeout(r, 110))
    p.update(200)
    expect(writes.at(-1)).toMatch(/\[=+\] importing 100% {2}200\/200 rows/)
    p.finish()
    expect(writes.at(-1)).toBe(ERASE)
  })

  it('writes plain lines, no control characters, when stderr is not a terminal', async () => {
    const { writes, stream } = fakeStream(false)
    const p = new Progress({
      stream,
      label: 'importing',
      total: 4096,
      unit: 'bytes',
      everyMs: 50,
    })
    p.update(1024) // the first line comes after everyMs, not at once
    expect(writes).toEqual([])
    await new Promise((r) => setTimeout(r, 60))
    p.update(2048)
    p.log('skipped line 2: bad')
    p.finish()
    expect(writes).toEqual([
      expect.stringMatching(
        /^importing +50% {2}2\.0 KiB\/4\.0 KiB {2}.*\/s\n$/,
      ),
      'skipped line 2: bad\n',
    ])
  })
})
