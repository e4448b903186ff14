/**
 * What the status page's data costs at scale (not part of `npm test`):
 *   node scripts/bench-status.ts [--pairs 400000 --baselines 100000 --runs 7]
 *
 * Fills a hold's counter table (no records: the page reads the table, not the repo) with
 * `pairs` counted (DID, repository) pairs, imports baselines for `baselines` of them, then times
 * what the page computes when its cache expires, `overall()` and `top(10)` (the first look and
 * the ones after it), and what keeping them cheap costs the counting side: persisting counts
 * for 10,000 pairs that exist already, spread over the table.
 */
import { rm } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer } from '../src/server.ts'
import { freePort, OWNER } from './lib.ts'
import { identity, testPlcUrl } from '../test/_identity.ts'
import { tempDir } from '../test/_util.ts'

const { values: args } = parseArgs({
  options: {
    pairs: { type: 'string', default: '400000' },
    baselines: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '7' },
  },
})
const PAIRS = Number(args.pairs)
const BASELINES = Number(args.baselines)
const RUNS = Number(args.runs)

const didOf = (i: number) =>
  `did:plc:status${String(i % 40000).padStart(18, '0')}`
const repoOf = (i: number) => `repo-${Math.floor(i / 40000)}`

const time = (fn: () => unknown): number => {
  const started = performance.now()
  fn()
  return performance.now() - started
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const fmt = (xs: number[]) =>
  `median ${median(xs).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`

const dir = await tempDir('atcr-status-bench-')
await identity(OWNER)
const env = readEnv({
  HOLD_DATA_DIR: dir,
  HOLD_PORT: String(await freePort()),
  HOLD_OWNER_DID: OWNER,
  HOLD_PLC_URL: await testPlcUrl(),
  HOLD_STATS_FLUSH_MS: '86400000',
  LOG_LEVEL: 'silent',
})
// Created, not started: no flush writes records, and nothing else runs beside the timings.
const hold = await HoldServer.create(envToCfg(env, 'bench'), envToSecrets(env))
const stats = hold.ctx.stats
try {
  const seeding = performance.now()
  for (let i = 0; i < PAIRS; i++) {
    for (let k = i % 7; k >= 0; k--) stats.countPull(didOf(i), repoOf(i))
    if (i % 50_000 === 49_999) stats.persist()
  }
  stats.persist()
  for (let i = 0; i < BASELINES; i += 5000) {
    stats.importBaselines(
      Array.from({ length: Math.min(5000, BASELINES - i) }, (_, j) => ({
        did: didOf((i + j) * 3),
        repository: repoOf((i + j) * 3),
        pullCount: ((i + j) % 1000) + 1,
        pushCount: 1,
      })),
    )
  }
  console.error(
    `seeded ${PAIRS} pairs, ${BASELINES} baselines in ${((performance.now() - seeding) / 1000).toFixed(1)} s`,
  )

  const overall: number[] = []
  const top: number[] = []
  const persist: number[] = []
  const firstTop = time(() => stats.top(10))
  for (let r = 0; r < RUNS; r++) {
    // 10,000 counted pairs that exist already, as under load spread over the hold.
    for (let i = 0; i < 10_000; i++) {
      const j = (r * 10_000 + i * 37) % PAIRS
      stats.countPull(didOf(j), repoOf(j))
    }
    persist.push(time(() => stats.persist()))
    overall.push(time(() => stats.overall()))
    top.push(time(() => stats.top(10)))
  }
  const totals = stats.overall()
  console.log(`| measure (${PAIRS} pairs, ${BASELINES} baselines) | time |`)
  console.log('|---|---|')
  console.log(`| overall() (pairs, pulls, pushes) | ${fmt(overall)} |`)
  console.log(`| top(10), first look | ${firstTop.toFixed(1)} ms |`)
  console.log(`| top(10), after that | ${fmt(top)} |`)
  console.log(`| persist of 10,000 counted existing pairs | ${fmt(persist)} |`)
  console.log(
    `| totals | ${totals.pairs} pairs, ${totals.pulls} pulls, ${totals.pushes} pushes |`,
  )
} finally {
  await hold.ctx.db.close()
  await rm(dir, { recursive: true, force: true })
}
