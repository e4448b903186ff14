/**
 * What the counting code costs by itself, with no HTTP around it (not part of `npm test`):
 *   npm run bench:counting -- [--counts 600000] [--rate 30000] [--windows 25,250] [--repeats 3]
 *
 * Builds the counter store as a hold does (a SQLite database in a temp dir, the count journal,
 * daily history, unique clients, per-tag counts) and takes `--counts` pulls over the benchmark's
 * 50 pairs (10 DIDs x 5 repositories, each DID and repository a fresh string as a parsed query's
 * is), each with the new-pair check a counted getBlob makes. A simulated clock moves `--rate`
 * counts a second: every window's worth of counts the persist's timer body runs (the journal
 * line, the merge into the pending deltas), and every simulated second the table takes what is
 * pending, as at the hold's defaults. The event loop gets a turn after each window, so the
 * journal's writes go on in libuv's pool as they do in a hold. Prints the process's CPU time
 * (every thread) per count for each window, the windows alternating, each run a fresh store.
 */
import { join } from 'node:path'
import { loadavg } from 'node:os'
import { setImmediate as turn } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Database } from '../src/db.ts'
import { createRootLogger } from '../src/logger.ts'
import { CounterStore } from '../src/stats/counter-store.ts'
import { ClientHasher } from '../src/stats/hll.ts'
import { History } from '../src/stats/history.ts'
import { COUNT_JOURNAL_FILE, CountJournal } from '../src/stats/journal.ts'
import { RefCounts } from '../src/stats/refs.ts'
import { TopPairs } from '../src/stats/top-pairs.ts'
import { removeDir, tempDir } from '../test/_shared.ts'
import { DIDS, median, REPOS } from './lib.ts'

const { values: args } = parseArgs({
  options: {
    counts: { type: 'string', default: '600000' },
    rate: { type: 'string', default: '30000' },
    windows: { type: 'string', default: '25,250' },
    repeats: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
})

const log = createRootLogger('warn', {
  pretty: false,
  destination: { write: () => {} },
})

/** CPU µs per count for one fresh store persisting every `windowMs` (simulated). */
const run = async (
  counts: number,
  rate: number,
  windowMs: number,
): Promise<number> => {
  const dir = await tempDir('atcr-counting-')
  const db = new Database(join(dir, 'hold.sqlite'))
  const counters = new CounterStore(db, new TopPairs(db), log, {
    history: new History(db, 400, log),
    clients: new ClientHasher(Buffer.alloc(32, 7)),
    refs: new RefCounts(db),
    journal: new CountJournal(join(dir, COUNT_JOURNAL_FILE)),
  })
  counters.recover()
  const perWindow = Math.max(1, Math.round((rate * windowMs) / 1000))
  let now = Date.now()
  let tableAt = now
  const started = process.cpuUsage()
  for (let i = 0; i < counts; i++) {
    // Fresh strings, as a parsed query's are: no count finds its key's hash cached.
    const did = `${DIDS[i % DIDS.length]} `.trimEnd()
    const repo =
      `${REPOS[Math.floor(i / DIDS.length) % REPOS.length]} `.trimEnd()
    counters.has(did, repo)
    counters.count('pull', did, repo, now, 'ip:127.0.0.1')
    if ((i + 1) % perWindow === 0) {
      now += windowMs
      counters.settle()
      if (now - tableAt >= 1000) {
        counters.persist()
        tableAt = now
      }
      await turn()
    }
  }
  counters.persist()
  const { user, system } = process.cpuUsage(started)
  await counters.close()
  db.db.close()
  await removeDir(dir)
  return (user + system) / counts
}

const main = async () => {
  const counts = Number(args.counts)
  const rate = Number(args.rate)
  const windows = args.windows.split(',').map(Number)
  const repeats = Number(args.repeats)
  console.log(
    `bench:counting: ${counts} counts over ${DIDS.length * REPOS.length} pairs at a simulated ${rate} a second, persist windows ${windows.join(', ')} ms, ${repeats} runs each; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  )
  // One unmeasured run, so V8 has compiled the code before any figure is taken.
  await run(Math.min(counts, 100_000), rate, windows[0])
  const results = new Map<number, number[]>(windows.map((w) => [w, []]))
  for (let r = 0; r < repeats; r++) {
    for (const w of r % 2 ? [...windows].reverse() : windows) {
      const us = await run(counts, rate, w)
      results.get(w)!.push(us)
      console.log(`window ${w} ms, run ${r + 1}: ${us.toFixed(3)} µs per count`)
    }
  }
  console.log('\n| persist window | CPU per count (median) | runs |')
  console.log('|---:|---:|---|')
  for (const [w, us] of results) {
    console.log(
      `| ${w} ms | ${median(us).toFixed(3)} µs | ${us.map((u) => u.toFixed(3)).join(', ')} |`,
    )
  }
}

if (args.help) {
  console.log(
    'npm run bench:counting -- [--counts 600000] [--rate 30000] [--windows 25,250] [--repeats 3]',
  )
} else {
  await main()
}
