import { checkBaseline, type Baseline } from '../../stats/baseline.ts'
import type { Command } from '../command.ts'
import { CliError, UsageError } from '../errors.ts'
import { json } from '../format.ts'
import { Progress } from '../progress.ts'
import {
  APPVIEW_TABLE,
  EXPECTED_COLUMNS,
  FORMATS,
  openSource,
  type Format,
} from '../sources.ts'

/** Skipped rows listed one by one before the rest are only counted (unless --all-errors). */
const SHOWN_SKIPS = 100

export const importStats: Command = {
  name: 'import-stats',
  args: '<file>',
  summary: "import the AppView's pull/push counts as baselines (admin)",
  help: `<file> is the AppView's SQLite database (its ${APPVIEW_TABLE} table), or the same columns as a JSON array (what sqlite3 -json writes), JSON lines, or CSV with a header line; the format is told from the content and the extension unless --format is given. The columns are ${EXPECTED_COLUMNS} (pullCount or "Pull Count" are the same names); an unknown or missing column stops the import before anything is sent. Timestamps may be RFC 3339 (Go's RFC3339Nano), what Go SQLite drivers write ('2025-01-15 10:00:00.123456789+00:00', also without fraction or zone, read as UTC), or Go's time.Time.String() ('2025-01-15 10:00:00.123456789 +0000 UTC m=+0.000100001').\n\nEach (did, repository) gets the imported counts as its baseline, added to what the hold counts itself; lastPull/lastPush are the later of the two. Importing replaces the baselines of the pairs the file names: importing the same file again changes nothing, a newer export updates them. Invalid rows (bad DID, repository, count or timestamp, a pair named twice) are listed with their line or row and skipped; valid rows go to the hold in batches, each applied entirely or not at all. When rows were skipped the import exits with code 1 (the valid rows are in; import again once they are fixed), unless --allow-skips is given.`,
  options: {
    format: {
      type: 'string',
      value: 'FORMAT',
      description: `${FORMATS.join(', ')} (default: detected)`,
    },
    table: {
      type: 'string',
      value: 'NAME',
      description: `SQLite table to read (default ${APPVIEW_TABLE})`,
    },
    'batch-size': {
      type: 'string',
      value: 'N',
      description: 'rows per call to the hold, 1-1000 (default 500)',
    },
    'dry-run': {
      type: 'boolean',
      description: 'check the file only; send nothing (needs no hold)',
    },
    'allow-skips': {
      type: 'boolean',
      description: 'exit 0 even when rows were skipped',
    },
    'all-errors': {
      type: 'boolean',
      description: `list every skipped row (default: the first ${SHOWN_SKIPS})`,
    },
    json: { type: 'boolean', description: 'print the summary as JSON' },
  },
  run: async ({ io, args: [file], opts, client }) => {
    const format = opts.format as string | undefined
    if (format !== undefined && !FORMATS.includes(format as Format)) {
      throw new UsageError(
        `--format must be one of ${FORMATS.join(', ')}, got "${format}"`,
      )
    }
    const rawSize = (opts['batch-size'] as string | undefined) ?? '500'
    const batchSize = Number(rawSize)
    if (!/^\d+$/.test(rawSize) || batchSize < 1 || batchSize > 1000) {
      throw new UsageError(
        `--batch-size must be a whole number from 1 to 1000, got "${rawSize}"`,
      )
    }
    const dryRun = opts['dry-run'] === true
    // Fail on an unreachable hold or a wrong password before reading anything.
    if (!dryRun) await client().adminGet('status')

    const source = await openSource(file, {
      format: format as Format | undefined,
      table: opts.table as string | undefined,
    })
    const progress = new Progress({
      stream: io.stderr,
      label: dryRun ? 'checking' : 'importing',
      total: source.total,
      unit: source.unit,
    })
    const firstSeen = new Map<string, string>()
    const reasons = new Map<string, number>()
    let read = 0
    let skipped = 0
    let sent = 0
    let changed = 0
    let unchanged = 0
    let batch: Baseline[] = []
    const skip = (
      where: string,
      reason: string,
      kind = reason.split(':')[0],
    ) => {
      skipped++
      reasons.set(kind, (reasons.get(kind) ?? 0) + 1)
      if (skipped <= SHOWN_SKIPS || opts['all-errors']) {
        progress.log(`skipped ${where}: ${reason}`)
      }
    }
    const send = async () => {
      if (batch.length === 0) return
      if (!dryRun) {
        const r = await client().adminPost<{
          changed: number
          unchanged: number
        }>('stats/import', { baselines: batch })
        changed += r.changed
        unchanged += r.unchanged
      }
      sent += batch.length
      batch = []
    }
    const now = Date.now()
    try {
      for await (const item of source.items()) {
        read++
        if ('error' in item) skip(item.where, item.error)
        else {
          const check = checkBaseline(item.row, now)
          if (!check.ok) skip(item.where, check.reason)
          else {
            const { did, repository } = check.baseline
            const key = `${did} ${repository}`
            const first = firstSeen.get(key)
            if (first !== undefined) {
              skip(
                item.where,
                `names the same did and repository as ${first}`,
                'names a pair an earlier row named',
              )
            } else {
              firstSeen.set(key, item.where)
              batch.push(check.baseline)
              if (batch.length >= batchSize) await send()
            }
          }
        }
        progress.update(source.position())
      }
      await send()
    } catch (err) {
      if (err instanceof CliError && sent > 0 && !dryRun) {
        throw new CliError(
          `${err.message} (${sent} rows were imported before this; running the import again is safe)`,
        )
      }
      throw err
    } finally {
      progress.finish()
      source.close()
    }

    const summary = {
      file: source.description,
      format: source.format,
      dryRun,
      read,
      imported: dryRun ? 0 : sent,
      valid: sent,
      changed,
      unchanged,
      skipped,
      reasons: Object.fromEntries(reasons),
    }
    if (opts.json) io.out(json(summary))
    else {
      io.out(`read ${read} rows from ${source.description}`)
      if (dryRun) io.out(`${sent} rows are valid (dry run: nothing was sent)`)
      else {
        io.out(
          `imported ${sent} rows into ${client().url}: ${changed} pairs changed, ${unchanged} unchanged`,
        )
      }
      if (skipped === 0) io.out('skipped none')
      else {
        io.out(`skipped ${skipped} rows:`)
        for (const [kind, n] of [...reasons].sort((a, b) => b[1] - a[1])) {
          io.out(`  ${String(n).padStart(6)}  ${kind}`)
        }
        if (skipped > SHOWN_SKIPS && !opts['all-errors']) {
          io.out(
            `  (${skipped - SHOWN_SKIPS} skipped rows not listed above; --all-errors lists them)`,
          )
        }
      }
    }
    // A skipped row is a count the hold does not show: not a success unless the operator says so.
    if (skipped > 0 && opts['allow-skips'] !== true) {
      throw new CliError(
        dryRun
          ? `${skipped} of ${read} rows would be skipped; fix them, or pass --allow-skips to import without them`
          : `${skipped} of ${read} rows were skipped, so the import is incomplete (the ${sent} valid rows are in); fix them and import again, or pass --allow-skips to accept`,
      )
    }
  },
}
