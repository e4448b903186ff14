import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { extname } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { CsvParser } from './csv.ts'
import { CliError } from './errors.ts'

/** One input row's fields, by their names in the AppView's table, values as found. */
export type RawRow = {
  did: unknown
  repository: unknown
  pullCount: unknown
  pushCount: unknown
  lastPull: unknown
  lastPush: unknown
}

/** A row, or why it could not be read; `where` is "row 12" (SQLite) or "line 12" (text). */
export type SourceItem =
  { where: string; row: RawRow } | { where: string; error: string }

export type Format = 'sqlite' | 'jsonl' | 'csv'
export const FORMATS: Format[] = ['sqlite', 'jsonl', 'csv']

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

const SQLITE_MAGIC = 'SQLite format 3\0'

/** Picks the format from the file's first bytes, then its extension, then its first character. */
export const detectFormat = async (file: string): Promise<Format> => {
  const head = await readHead(file, 4096)
  if (head.subarray(0, 16).toString('latin1') === SQLITE_MAGIC) return 'sqlite'
  const ext = extname(file).toLowerCase()
  if (['.jsonl', '.ndjson', '.json'].includes(ext)) return 'jsonl'
  if (ext === '.csv') return 'csv'
  if (['.db', '.sqlite', '.sqlite3'].includes(ext)) {
    throw new CliError(
      `${file} is not a SQLite database (its header is not SQLite's)`,
    )
  }
  const text = head
    .toString('utf8')
    .replace(/^\uFEFF/, '')
    .trimStart()
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
    const pick: Partial<Record<keyof RawRow, string>> = {}
    for (const col of columns) {
      const field = FIELDS[fold(col)]
      if (field && !pick[field]) pick[field] = col
    }
    for (const need of ['did', 'repository'] as const) {
      if (!pick[need]) {
        throw new CliError(
          `table ${table} in ${file} has no ${need} column (columns: ${columns.join(', ')})`,
        )
      }
    }
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

const openText = async (
  file: string,
  format: 'jsonl' | 'csv',
): Promise<Source> => {
  const size = (await stat(file)).size
  const stream = createReadStream(file, {
    encoding: 'utf8',
    highWaterMark: 256 * 1024,
  })
  return {
    format,
    description: `${file} (${format === 'csv' ? 'CSV' : 'JSON lines'})`,
    unit: 'bytes',
    total: size,
    position: () => stream.bytesRead,
    items: () => (format === 'csv' ? csvItems(stream) : jsonlItems(stream)),
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

async function* jsonlItems(
  stream: AsyncIterable<string>,
): AsyncGenerator<SourceItem> {
  let buf = ''
  let line = 0
  const parse = (text: string): SourceItem | undefined => {
    line++
    const where = `line ${line}`
    const trimmed = text.replace(/\r$/, '').trim()
    if (trimmed === '') return undefined
    let value: unknown
    try {
      value = JSON.parse(trimmed)
    } catch {
      return { where, error: 'is not valid JSON' }
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return { where, error: 'is not a JSON object' }
    }
    const byField = new Map<keyof RawRow, unknown>()
    for (const [k, v] of Object.entries(value)) {
      const field = FIELDS[fold(k)]
      if (field && !byField.has(field)) byField.set(field, v)
    }
    return { where, row: rowFrom((f) => byField.get(f)) }
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

async function* csvItems(
  stream: AsyncIterable<string>,
): AsyncGenerator<SourceItem> {
  const parser = new CsvParser()
  let header: (keyof RawRow | undefined)[] | undefined
  const convert = function* (records: ReturnType<CsvParser['push']>) {
    for (const rec of records) {
      const where = `line ${rec.line}`
      if ('error' in rec) {
        yield { where, error: rec.error } as SourceItem
        continue
      }
      if (!header) {
        header = rec.fields.map((name) => FIELDS[fold(name)])
        for (const need of ['did', 'repository'] as const) {
          if (!header.includes(need)) {
            throw new CliError(
              `the CSV header (line ${rec.line}) has no ${need} column: ${rec.fields.join(',')}`,
            )
          }
        }
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
      header.forEach((field, i) => {
        if (field && !values.has(field)) values.set(field, rec.fields[i])
      })
      yield { where, row: rowFrom((f) => values.get(f)) } as SourceItem
    }
  }
  for await (const chunk of stream) yield* convert(parser.push(chunk))
  yield* convert(parser.end())
  if (!header) throw new CliError('the CSV file is empty: no header line')
}
