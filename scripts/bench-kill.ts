/**
 * What a `kill -9` loses of the counts (not part of `npm test`):
 *   npm run bench:kill -- [--runs 5] [--seconds 3] [--connections 8] [--tree DIR]
 *
 * Each run starts a real hold (scripts/bench-server.ts) on a fresh data dir, stores a 1 KiB
 * blob, and drives counted getBlob (`method=GET` with `repo`, over the 50 pairs of the other
 * benchmarks) from `--connections` keep-alive loops, each sending its next request when the last
 * is answered. After `--seconds` plus a random part of a second it kills the hold with SIGKILL,
 * starts it again on the same data dir and adds up getStats over the pairs. Prints, per run, the
 * pulls answered with a 200, those the hold kept, and the difference: answered and not kept is
 * what the kill lost (counts taken for requests whose answer never left, or left as the kill
 * came, make it smaller, and can make it negative), also as milliseconds of the measured rate.
 * `--tree` runs another checkout's hold (an older commit, to compare with).
 */
import { randomBytes } from 'node:crypto'
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  getJson,
  median,
  pushBlob,
  scenarioPaths,
  startHold,
  stopHold,
} from './lib.ts'
import { removeDir } from '../test/_shared.ts'

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '8' },
    tree: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (args.help) {
  console.log(
    'npm run bench:kill -- [--runs N] [--seconds S] [--connections N] [--tree DIR]',
  )
} else {
  await main()
}

async function main() {
  const runs = Number(args.runs)
  const seconds = Number(args.seconds)
  const connections = Number(args.connections)
  const tree = args.tree ? resolve(args.tree) : undefined
  console.error(
    `bench:kill: ${runs} runs, ${connections} connections, kill after ${seconds}-${seconds + 1} s; ${tree ?? 'this checkout'}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  )
  const rows: {
    answered: number
    kept: number
    lost: number
    rate: number
    lostMs: number
  }[] = []
  for (let run = 1; run <= runs; run++) {
    const first = await startHold({ tree })
    const digest = await pushBlob(first, randomBytes(1024))
    const paths = scenarioPaths(digest)
    const pulls = paths['url+repo']
    let answered = 0
    let stop = false
    const loops = Array.from({ length: connections }, async (_, c) => {
      for (let i = c; !stop; i += connections) {
        try {
          const res = await fetch(`${first.base}${pulls[i % pulls.length]}`)
          await res.arrayBuffer()
          if (res.status === 200 && !stop) answered++
        } catch {
          // The hold was killed under this request.
          return
        }
      }
    })
    const started = performance.now()
    await new Promise((r) =>
      setTimeout(r, seconds * 1000 + Math.random() * 1000),
    )
    const exited = new Promise((r) => first.proc.once('exit', r))
    first.proc.kill('SIGKILL')
    const elapsed = (performance.now() - started) / 1000
    // Answers that arrive after the kill signal are not counted as answered.
    stop = true
    await exited
    await Promise.all(loops)

    // The same port: the hold's DID (did:web of its host and port) names its repo.
    const second = await startHold({
      tree,
      dataDir: first.dir,
      port: Number(new URL(first.base).port),
    })
    let kept = 0
    for (const path of paths.getStats) {
      kept += (await getJson<{ pullCount: number }>(`${second.base}${path}`))
        .pullCount
    }
    await stopHold(second)
    await removeDir(first.dir)
    const rate = answered / elapsed
    const lost = answered - kept
    rows.push({ answered, kept, lost, rate, lostMs: (lost / rate) * 1000 })
    console.error(
      `run ${run}: answered ${answered} in ${elapsed.toFixed(2)} s (${rate.toFixed(0)}/s), kept ${kept}, lost ${lost} (${((lost / rate) * 1000).toFixed(1)} ms)`,
    )
  }
  console.log(
    `\n| run | answered | kept | answered, not kept | as ms of the rate |\n|---:|---:|---:|---:|---:|`,
  )
  for (const [i, r] of rows.entries()) {
    console.log(
      `| ${i + 1} | ${r.answered} | ${r.kept} | ${r.lost} | ${r.lostMs.toFixed(1)} |`,
    )
  }
  console.log(
    `\nmedian lost: ${median(rows.map((r) => r.lost))} counts, ${median(rows.map((r) => r.lostMs)).toFixed(1)} ms`,
  )
}
