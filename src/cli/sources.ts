import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { extname } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import type { Baseline } from '../stats/baseline.ts'
import { CsvParser } from './csv.ts'
import { JsonArraySplitter, type JsonElement } from './json-array.ts'
import { CliError } from './errors.ts'

/** One input row's fields, by their names in the AppView's table, values as found. */
export type RawRow = Record<keyof Baseline, unknown>

/** A row, or why it could not be read; `where` is "row 12" (SQLite) or "line 12" (text). */
export type SourceItem =
  { where: string; row: RawRow } | { where: string; error: string }

export type Format = 'sqlite' | 'json' | 'jsonl' | 'csv'
export const FORMATS: Format[] = ['sqlite', 'json', 'jsonl', 'csv']

export type Source = {
  format: Format
  /** For the summary: what was read. */
  description: string
  unit: 'rows' | 'bytes'
  total: number
  /** How much of `total` has been read. */
  position(): number
  items(): AsyncGenerator<SourceItem>
  close(): void
}

export const APPVIEW_TABLE = 'repository_stats'

// Column names, compared without case or separators: pull_count, pullCount and "Pull Count"
// are one name.
const FIELDS: Record<string, keyof RawRow> = {
  did: 'did',
  repository: 'repository',
  repo: 'repository',
  pullcount: 'pullCount',
  pushcount: 'pushCount',
  lastpull: 'lastPull',
  lastpush: 'lastPush',
}
const fold = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '')

/** The fields by the names of the AppView's columns, for messages. */
const COLUMN: Record<keyof RawRow, string> = {
  did: 'did',
  repository: 'repository',
  pullCount: 'pull_count',
  pushCount: 'push_count',
  lastPull: 'last_pull',
  lastPush: 'last_push',
}
const REQUIRED: (keyof RawRow)[] = [
  'did',
  'repository',
  'pullCount',
  'pushCount',
]
export const EXPECTED_COLUMNS =
  'did, repository, pull_count, push_count, and optionally last_pull, last_push'

const showNames = (names: string[]) =>
  names.map((n) => (/^[\w.-]+$/.test(n) ? n : JSON.stringify(n))).join(', ')

/**
 * The field each column name stands for; or, when a name is unknown, a field is missing or named
 * twice, what is wrong. A misnamed count column (`pulls`) must not read as zero pulls.
 */
export const mapColumns = (
  names: string[],
): { fields: (keyof RawRow)[] } | { problem: string } => {
  const fields: (keyof RawRow)[] = []
  const unknown: string[] = []
  const seen = new Map<keyof RawRow, string>()
  const twice: string[] = []
  for (const name of names) {
    const field = FIELDS[fold(name)]
    if (!field) unknown.push(name)
    else {
      const before = seen.get(field)
      if (before !== undefined) {
        twice.push(`${COLUMN[field]} twice (${showNames([before, name])})`)
      }
      seen.set(field, name)
      fields.push(field)
    }
  }
  const missing = REQUIRED.filter((f) => !seen.has(f)).map((f) => COLUMN[f])
  const problems = [
    ...(unknown.length ? [`unknown ${showNames(unknown)}`] : []),
    ...(missing.length ? [`missing ${missing.join(', ')}`] : []),
    ...twice.map((t) => `named ${t}`),
  ]
  return problems.length ? { problem: problems.join('; ') } : { fields }
}

/** A whole-input column error: what is wrong, what was expected and what was found. */
const columnError = (what: string, problem: string, names: string[]) =>
  `${what} does not have the expected columns: ${problem} (expected ${EXPECTED_COLUMNS}; found ${showNames(names) || 'none'})`

const SQLITE_MAGIC = 'SQLite format 3\0'

/** Picks the format from the file's first bytes, then its extension, then its first character. */
export const detectFormat = async (file: string): Promise<Format> => {
  const head = await readHead(file, 4096)
  if (head.subarray(0, 16).toString('latin1') === SQLITE_MAGIC) return 'sqlite'
  const ext = extname(file).toLowerCase()
  const text = head
    .toString('utf8')
    .replace(/^\uFEFF/, '')
    .trimStart()
  // `sqlite3 -json` writes one array; JSON lines are one object per line.
  if (['.jsonl', '.ndjson', '.json'].includes(ext)) {
    return text.startsWith('[') || (ext === '.json' && text === '')
      ? 'json'
      : 'jsonl'
  }
  if (ext === '.csv') return 'csv'
  if (['.db', '.sqlite', '.sqlite3'].includes(ext)) {
    throw new CliError(
      `${file} is not a SQLite database (its header is not SQLite's)`,
    )
  }
  if (text.startsWith('[')) return 'json'
  return text.startsWith('{') ? 'jsonl' : 'csv'
}

const readHead = async (file: string, n: number): Promise<Buffer> => {
  let handle
  try {
    handle = await open(file, 'r')
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`)
  }
  try {
    const buf = Buffer.alloc(n)
    const { bytesRead } = await handle.read(buf, 0, n, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

export const openSource = async (
  file: string,
  opts: { format?: Format; table?: string } = {},
): Promise<Source> => {
  const format = opts.format ?? (await detectFormat(file))
  if (format === 'sqlite') return openSqlite(file, opts.table ?? APPVIEW_TABLE)
  return openText(file, format)
}

const openSqlite = (file: string, table: string): Source => {
  let db: DatabaseSync
  try {
    db = new DatabaseSync(file, { readOnly: true })
    db.exec('PRAGMA query_only = ON')
  } catch (err) {
    throw new CliError(
      `cannot open ${file} as SQLite: ${(err as Error).message} (copy the AppView's database with: sqlite3 <its file> ".backup appview.db")`,
    )
  }
  try {
    const tables = (
      db
        .prepare(
          "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name",
        )
        .all() as { name: string }[]
    ).map((t) => t.name)
    if (!tables.includes(table)) {
      throw new CliError(
        `${file} has no table ${table} (tables: ${tables.join(', ') || 'none'})`,
      )
    }
    const quoted = `"${table.replace(/"/g, '""')}"`
    const columns = (
      db.prepare(`PRAGMA table_info(${quoted})`).all() as { name: string }[]
    ).map((c) => c.name)
    const mapped = mapColumns(columns)
    if ('problem' in mapped) {
      throw new CliError(
        `${columnError(`table ${table} in ${file}`, mapped.problem, columns)}; for another table, export the expected columns with sqlite3 -json`,
      )
    }
    const pick: Partial<Record<keyof RawRow, string>> = {}
    columns.forEach((col, i) => (pick[mapped.fields[i]] = col))
    const select = (Object.keys(FIELDS) as string[])
      .map((k) => FIELDS[k])
      .filter((f, i, all) => all.indexOf(f) === i)
      .map((f) =>
        pick[f] ? `"${pick[f]!.replace(/"/g, '""')}" AS ${f}` : `NULL AS ${f}`,
      )
      .join(', ')
    const total = (
      db.prepare(`SELECT count(*) AS n FROM ${quoted}`).get() as { n: number }
    ).n
    const stmt = db.prepare(`SELECT ${select} FROM ${quoted}`)
    // Counts past 2^53 come back as bigint and are refused, not silently rounded.
    stmt.setReadBigInts(true)
    let n = 0
    return {
      format: 'sqlite',
      description: `${file} (SQLite, table ${table})`,
      unit: 'rows',
      total: Number(total),
      position: () => n,
      async *items() {
        for (const row of stmt.iterate()) {
          n++
          const r = row as unknown as RawRow
          yield { where: `row ${n} (${r.did} ${r.repository})`, row: r }
        }
      },
      close: () => db.close(),
    }
  } catch (err) {
    db.close()
    throw err
  }
}

const DESCRIPTION = { csv: 'CSV', jsonl: 'JSON lines', json: 'JSON array' }

const openText = async (
  file: string,
  format: 'json' | 'jsonl' | 'csv',
): Promise<Source> => {
  const size = (await stat(file)).size
  const stream = createReadStream(file, {
    encoding: 'utf8',
    highWaterMark: 256 * 1024,
  })
  return {
    format,
    description: `${file} (${DESCRIPTION[format]})`,
    unit: 'bytes',
    total: size,
    position: () => stream.bytesRead,
    items: () =>
      format === 'csv'
        ? csvItems(stream)
        : format === 'json'
          ? jsonArrayItems(stream)
          : jsonlItems(stream),
    close: () => stream.destroy(),
  }
}

const rowFrom = (get: (field: keyof RawRow) => unknown): RawRow => ({
  did: get('did'),
  repository: get('repository'),
  pullCount: get('pullCount'),
  pushCount: get('pushCount'),
  lastPull: get('lastPull'),
  lastPush: get('lastPush'),
})

/**
 * Reads JSON objects by their keys. The first object's keys are checked like a header, and a
 * problem there stops the import before anything is sent; a later object with other keys is a
 * skipped row.
 */
class JsonObjects {
  private checked = false

  item(where: string, text: string): SourceItem {
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return { where, error: 'is not valid JSON' }
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return { where, error: 'is not a JSON object' }
    }
    const keys = Object.keys(value)
    const mapped = mapColumns(keys)
    if ('problem' in mapped) {
      if (!this.checked) {
        throw new CliError(
          columnError(`the JSON object on ${where}`, mapped.problem, keys),
        )
      }
      return {
        where,
        error: `does not have the expected columns: ${mapped.problem}`,
      }
    }
    this.checked = true
    const values = Object.values(value) as unknown[]
    const byField = new Map<keyof RawRow, unknown>()
    mapped.fields.forEach((f, i) => byField.set(f, values[i]))
    return { where, row: rowFrom((f) => byField.get(f)) }
  }
}

async function* jsonlItems(
  stream: AsyncIterable<string>,
): AsyncGenerator<SourceItem> {
  const objects = new JsonObjects()
  let buf = ''
  let line = 0
  const parse = (text: string): SourceItem | undefined => {
    line++
    const trimmed = text.replace(/\r$/, '').trim()
    if (trimmed === '') return undefined
    return objects.item(`line ${line}`, trimmed)
  }
  for await (const chunk of stream) {
    buf += chunk
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      const item = parse(buf.slice(0, nl))
      buf = buf.slice(nl + 1)
      if (item) yield item
    }
  }
  if (buf !== '') {
    const item = parse(buf)
    if (item) yield item
  }
}

async function* jsonArrayItems(
  stream: AsyncIterable<string>,
): AsyncGenerator<SourceItem> {
  const objects = new JsonObjects()
  const splitter = new JsonArraySplitter()
  const convert = function* (elements: JsonElement[]) {
    for (const el of elements) {
      const where = `line ${el.line}`
      yield 'error' in el
        ? ({ where, error: el.error } as SourceItem)
        : objects.item(where, el.text)
    }
  }
  for await (const chunk of stream) yield* convert(splitter.push(chunk))
  yield* convert(splitter.end())
}

async function* csvItems(
  stream: AsyncIterable<string>,
): AsyncGenerator<SourceItem> {
  const parser = new CsvParser()
  let header: (keyof RawRow)[] | undefined
  const convert = function* (records: ReturnType<CsvParser['push']>) {
    for (const rec of records) {
      const where = `line ${rec.line}`
      if ('error' in rec) {
        yield { where, error: rec.error } as SourceItem
        continue
      }
      if (!header) {
        const mapped = mapColumns(rec.fields)
        if ('problem' in mapped) {
          throw new CliError(
            columnError(
              `the CSV header (line ${rec.line})`,
              mapped.problem,
              rec.fields,
            ),
          )
        }
        header = mapped.fields
        continue
      }
      if (rec.fields.length !== header.length) {
        yield {
          where,
          error: `has ${rec.fields.length} fields, the header has ${header.length}`,
        } as SourceItem
        continue
      }
      const values = new Map<keyof RawRow, string>()
      header.forEach((field, i) => values.set(field, rec.fields[i]))
      yield { where, row: rowFrom((f) => values.get(f)) } as SourceItem
    }
  }
  for await (const chunk of stream) yield* convert(parser.push(chunk))
  yield* convert(parser.end())
  if (!header) throw new CliError('the CSV file is empty: no header line')
}
