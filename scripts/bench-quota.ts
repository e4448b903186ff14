/**
 * getQuota at scale (not part of `npm test`):
 *   node scripts/bench-quota.ts [--records 10000 --runs 1000]
 *
 * Stores `records` small blobs, records them as layers of one user through notifyManifest's
 * service (200 layers per manifest, one commit each), then times getQuota over HTTP and the
 * quota read in process, and, for comparison, what summing that user's layer rows would cost.
 */
import { createHash, randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { HoldServer } from '../src/server.ts'
import { freePort, OWNER } from './lib.ts'
import { identity, testPlcUrl } from '../test/_identity.ts'
import { tempDir } from '../test/_util.ts'

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '1000' },
  },
})
const RECORDS = Number(args.records)
const RUNS = Number(args.runs)
const USER = 'did:plc:quotabench000000000000000'

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[
    Math.min(xs.length - 1, Math.floor(xs.length * p))
  ]
const fmt = (xs: number[]) =>
  `median ${pct(xs, 0.5).toFixed(3)} ms, p99 ${pct(xs, 0.99).toFixed(3)} ms`

const dir = await tempDir('atcr-quota-bench-')
await identity(OWNER)
const tiers = join(dir, 'quotas.yaml')
await writeFile(tiers, 'tiers:\n  standard: 100GB\n')
const port = await freePort()
const env = readEnv({
  HOLD_DATA_DIR: join(dir, 'data'),
  HOLD_HOST: '127.0.0.1',
  HOLD_PORT: String(port),
  HOLD_OWNER_DID: OWNER,
  HOLD_PLC_URL: await testPlcUrl(),
  HOLD_QUOTAS_FILE: tiers,
  LOG_LEVEL: 'silent',
})
const hold = await HoldServer.create(envToCfg(env, 'bench'), envToSecrets(env))
await hold.start()
const { ctx } = hold
try {
  const seeding = performance.now()
  const layers: { digest: string; size: number; mediaType: string }[] = []
  for (let i = 0; i < RECORDS; i++) {
    const bytes = randomBytes(32 + (i % 64))
    const hex = createHash('sha256').update(bytes).digest('hex')
    await ctx.blobs.put(hex, Readable.from([bytes]), 1024)
    layers.push({
      digest: `sha256:${hex}`,
      size: bytes.length,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    })
    if (i % 1000 === 999) process.stderr.write(`stored ${i + 1} blobs\r`)
  }
  for (let i = 0; i < layers.length; i += 200) {
    const part = layers.slice(i, i + 200)
    await ctx.layers.recordPush(
      {
        userDid: USER,
        repository: `app-${i / 200}`,
        manifestDigest: `sha256:${createHash('sha256').update(String(i)).digest('hex')}`,
        layers: part,
        blobs: part.map((l) => l.digest),
        private: false,
      },
      ctx.quotas.limitFor(USER).limit,
    )
    if (i % 2000 === 0) process.stderr.write(`recorded ${i + 200} layers   \r`)
  }
  const rows = ctx.db.db
    .prepare(
      "SELECT count(*) AS n FROM record WHERE collection = 'io.atcr.hold.layer'",
    )
    .get() as { n: number }
  console.error(
    `\nseeded ${rows.n} layer records in ${((performance.now() - seeding) / 1000).toFixed(1)} s`,
  )

  const url = `http://127.0.0.1:${port}/xrpc/io.atcr.hold.getQuota?userDid=${encodeURIComponent(USER)}`
  const http: number[] = []
  let body: unknown
  for (let r = 0; r < RUNS; r++) {
    const started = performance.now()
    const res = await fetch(url)
    body = await res.json()
    http.push(performance.now() - started)
  }
  const inProcess: number[] = []
  for (let r = 0; r < RUNS; r++) {
    const started = performance.now()
    ctx.quotas.quota(USER)
    inProcess.push(performance.now() - started)
  }
  const sum = ctx.db.db.prepare(
    'SELECT count(DISTINCT digest) AS n, sum(size) AS bytes FROM layer_index WHERE user_did = ?',
  )
  const scan: number[] = []
  for (let r = 0; r < Math.min(RUNS, 100); r++) {
    const started = performance.now()
    sum.get(USER)
    scan.push(performance.now() - started)
  }
  console.log(`| getQuota, ${rows.n} layer records of one user | time |`)
  console.log('|---|---|')
  console.log(`| over HTTP (fetch to answer) | ${fmt(http)} |`)
  console.log(`| quota() in process (one row) | ${fmt(inProcess)} |`)
  console.log(`| for comparison: summing the user's rows | ${fmt(scan)} |`)
  console.log(`| answer | \`${JSON.stringify(body)}\` |`)
} finally {
  await hold.destroy()
  await rm(dir, { recursive: true, force: true })
}
