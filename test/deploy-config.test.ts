import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdir, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { parse } from 'smol-toml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { envToCfg, readEnv } from '../src/config.ts'
import { LEXICON_DIR } from '../src/lexicons.ts'
import {
  freePort,
  removeDir,
  ROOT,
  startHold,
  tempDir,
  waitFor,
  type TestHold,
} from './_util.ts'

const read = (name: string) => readFileSync(join(ROOT, name), 'utf8')

type Instruction = { op: string; args: string }

/** Dockerfile instructions by stage: continuation lines joined, comments dropped. */
const dockerStages = (text: string): Instruction[][] => {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
  const stages: Instruction[][] = []
  for (const line of joined.split('\n')) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line)
    if (!m) continue
    const ins = { op: m[1].toUpperCase(), args: m[2].trim() }
    if (ins.op === 'FROM') stages.push([])
    stages[stages.length - 1].push(ins)
  }
  return stages
}

/** `KEY=value KEY2=value2` (ENV, one or several pairs). */
const envPairs = (args: string): Record<string, string> =>
  Object.fromEntries(
    args
      .split(/\s+/)
      .filter(Boolean)
      .map((kv) => kv.split('=') as [string, string]),
  )

/** Seconds from a fly.toml duration: a number of seconds or a string such as "30s" or "2m". */
const seconds = (value: unknown): number => {
  if (typeof value === 'number') return value
  const m = /^(\d+)(s|m)$/.exec(String(value))
  if (!m) throw new Error(`not a duration: ${String(value)}`)
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1)
}

/** Whether readEnv reads this variable: a sentinel value must land in some field. */
const isConfigVariable = (name: string) =>
  Object.values(readEnv({ [name]: 'sentinel-value' })).includes(
    'sentinel-value',
  )

type FlyToml = {
  kill_signal: string
  kill_timeout: number | string
  build: { dockerfile: string }
  env: Record<string, string>
  mounts: { source: string; destination: string }[]
  http_service: {
    internal_port: number
    force_https: boolean
    auto_stop_machines: boolean | string
    min_machines_running: number
    concurrency: { type: string; soft_limit: number; hard_limit: number }
    checks: { path: string; method: string; interval: string }[]
  }
  metrics: { port: number; path: string }
}

const fly = parse(read('fly.toml')) as unknown as FlyToml
const stages = dockerStages(read('Dockerfile'))
const final = stages[stages.length - 1]
const pkg = JSON.parse(read('package.json')) as {
  version: string
  bin: Record<string, string>
  scripts: Record<string, string>
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}
const ops = (stage: Instruction[], op: string) =>
  stage.filter((i) => i.op === op).map((i) => i.args)
const finalEnv = Object.assign(
  {},
  ...ops(final, 'ENV').map(envPairs),
) as Record<string, string>
const defaults = envToCfg(readEnv({}))

describe('Dockerfile', () => {
  it('builds every stage on node:24-slim, the Node major the project pins', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    const pinned = /^\^?(\d+)\./.exec(pkg.devDependencies.node)?.[1]
    expect(pinned).toBe('24')
    for (const stage of stages) {
      expect(stage[0].args.split(/\s+/)[0]).toBe(`node:${pinned}-slim`)
    }
  })

  it('runs the compiled service with exec-form CMD, as a non-root user, with production dependencies only', () => {
    expect(ops(final, 'ENTRYPOINT')).toEqual([])
    const cmd = ops(final, 'CMD')
    expect(cmd.length).toBe(1)
    // The same Node flags as `npm start` (the benchmarks run with those too).
    const start = pkg.scripts.start.split(/\s+/)
    expect(start[0]).toBe('node')
    expect(start[start.length - 1]).toBe('src/bin.ts')
    expect(JSON.parse(cmd[0])).toEqual([...start.slice(0, -1), 'dist/bin.js'])
    // dist/bin.js is what the build stage emits from src/bin.ts, and what package.json ships.
    const build = JSON.parse(read('tsconfig.build.json')) as {
      compilerOptions: { outDir: string; rootDir: string }
    }
    expect(build.compilerOptions).toMatchObject({
      outDir: 'dist',
      rootDir: 'src',
    })
    expect(existsSync(join(ROOT, 'src/bin.ts'))).toBe(true)
    expect(Object.values(pkg.bin)).toContain('dist/bin.js')
    expect(pkg.scripts.build).toContain('tsconfig.build.json')
    expect(stages.some((s) => ops(s, 'RUN').includes('npm run build'))).toBe(
      true,
    )

    const user = ops(final, 'USER')
    expect(user.length).toBe(1)
    const uid = user[0].split(':')[0]
    expect(['root', '0']).not.toContain(uid)

    // node_modules comes from a stage that installed production dependencies only.
    const from = ops(final, 'COPY')
      .map((a) => /^--from=(\S+)\s+(\S+)/.exec(a))
      .find((m) => m?.[2].endsWith('/node_modules'))
    expect(from).toBeDefined()
    const depsStage = stages.find((s) => s[0].args.endsWith(` AS ${from![1]}`))
    expect(depsStage).toBeDefined()
    const installs = ops(depsStage!, 'RUN').filter((r) => r.includes('npm ci'))
    expect(installs.length).toBe(1)
    expect(installs[0]).toContain('--omit=dev')
    expect(ops(final, 'RUN').join(' ')).not.toMatch(/npm (ci|install)/)
  })

  it('copies what the compiled code reads beside dist/: package.json and the lexicons', () => {
    const copied = ops(final, 'COPY')
      .filter((a) => !a.startsWith('--from'))
      .map((a) => a.split(/\s+/)[0])
    expect(copied).toEqual(expect.arrayContaining(['package.json', 'lexicons']))
    // src/lexicons.ts and server.ts resolve them one level above their own directory.
    expect(LEXICON_DIR).toBe(join(ROOT, 'lexicons/'))
    expect(read('src/server.ts')).toContain("'../package.json'")
  })

  it('agrees with fly.toml and the config defaults on the port, and keeps the data dir on a volume the user owns', () => {
    const port = Number(ops(final, 'EXPOSE')[0])
    expect(port).toBe(defaults.port)
    expect(Number(finalEnv.HOLD_PORT)).toBe(port)
    expect(fly.http_service.internal_port).toBe(port)
    expect(Number(fly.env.HOLD_PORT)).toBe(port)
    expect(fly.metrics.port).toBe(port)

    const dataDir = finalEnv.HOLD_DATA_DIR
    expect(dataDir).toBe('/data')
    expect(fly.env.HOLD_DATA_DIR).toBe(dataDir)
    expect(fly.mounts.map((m) => m.destination)).toEqual([dataDir])
    expect(JSON.parse(ops(final, 'VOLUME')[0])).toEqual([dataDir])
    const uid = ops(final, 'USER')[0].split(':')[0]
    expect(ops(final, 'RUN').join('\n')).toContain(
      `chown ${uid}:${uid} ${dataDir}`,
    )
  })

  it('has a health check that asks the path fly.toml checks', () => {
    const check = ops(final, 'HEALTHCHECK')
    expect(check.length).toBe(1)
    expect(check[0]).toContain(`'${fly.http_service.checks[0].path}'`)
  })

  it('gets only sources from the build context: .dockerignore drops data, dependencies and history', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    expect(ignored).toEqual(
      expect.arrayContaining(['node_modules', 'dist', 'data', '.git']),
    )
    const sources = stages
      .flatMap((s) => ops(s, 'COPY'))
      .filter((a) => !a.startsWith('--from'))
      .flatMap((a) => a.split(/\s+/).slice(0, -1))
    expect(sources).toEqual(
      expect.arrayContaining(['package.json', 'package-lock.json', 'src']),
    )
    for (const source of sources) {
      expect(existsSync(join(ROOT, source)), source).toBe(true)
      expect(ignored, source).not.toContain(source)
    }
  })
})

describe('fly.toml', () => {
  let hold: TestHold
  beforeAll(async () => {
    // Private, to show the health check and metrics need no credentials either way.
    hold = await startHold({ env: { HOLD_PUBLIC: 'false' } })
  })
  afterAll(async () => {
    await hold.stop()
    await removeDir(hold.dataDir)
  })

  it('builds from this Dockerfile and sets only variables the config reads, leaving per-hold values and keys to fly secrets', () => {
    expect(fly.build.dockerfile).toBe('Dockerfile')
    for (const name of Object.keys(fly.env)) {
      expect(isConfigVariable(name), name).toBe(true)
    }
    for (const secret of [
      'HOLD_SIGNING_KEY',
      'HOLD_ADMIN_PASSWORD',
      'HOLD_PUBLIC_URL',
    ]) {
      expect(Object.keys(fly.env)).not.toContain(secret)
    }
    const cfg = envToCfg(
      readEnv({ ...fly.env, HOLD_PUBLIC_URL: 'https://my-hold.fly.dev' }),
    )
    expect(cfg).toMatchObject({
      port: 8080,
      dataDir: '/data',
      did: 'did:web:my-hold.fly.dev',
      trustedProxyHeader: 'fly-client-ip',
    })
  })

  it('stops the machine with SIGTERM and waits longer than the drain grace period plus a flush', () => {
    expect(fly.kill_signal).toBe('SIGTERM')
    const timeout = seconds(fly.kill_timeout)
    // After the grace period, connections are cut and the last counts are written: allow 5 s.
    expect(timeout).toBeGreaterThanOrEqual(hold.hold.drainGraceMs / 1000 + 5)
    expect(timeout).toBeLessThanOrEqual(300) // Fly's ceiling
  })

  it('keeps one machine running over HTTPS with bounded concurrency', () => {
    const svc = fly.http_service
    expect(svc.force_https).toBe(true)
    expect([false, 'off']).toContain(svc.auto_stop_machines)
    expect(svc.min_machines_running).toBeGreaterThanOrEqual(1)
    expect(['requests', 'connections']).toContain(svc.concurrency.type)
    expect(svc.concurrency.soft_limit).toBeGreaterThan(0)
    expect(svc.concurrency.soft_limit).toBeLessThanOrEqual(
      svc.concurrency.hard_limit,
    )
    expect(fly.mounts.length).toBe(1)
  })

  it('names a health check and a metrics path that the real hold answers without credentials', async () => {
    const [check] = fly.http_service.checks
    expect(check.path).toBe('/xrpc/_health')
    expect(check.method.toUpperCase()).toBe('GET')
    const health = await fetch(new URL(check.path, hold.url))
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ version: 'test' })

    const metrics = await fetch(new URL(fly.metrics.path, hold.url))
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get('content-type')).toContain('text/plain')
    expect(await metrics.text()).toContain(
      'hold_http_requests_total{route="_health",method="GET",status="200"} 1',
    )
  })

  it('matches the README: the volume it mounts and the secrets it leaves out are the ones the deploy steps create', () => {
    const readme = read('README.md')
    expect(readme).toContain(`fly volumes create ${fly.mounts[0].source}`)
    const secrets = [...readme.matchAll(/fly secrets set ([^\n]+)/g)]
      .flatMap((m) => [...m[1].matchAll(/(HOLD_[A-Z_]+)=/g)])
      .map((m) => m[1])
    expect(secrets).toEqual(
      expect.arrayContaining([
        'HOLD_PUBLIC_URL',
        'HOLD_OWNER_DID',
        'HOLD_SIGNING_KEY',
      ]),
    )
    for (const name of secrets) expect(isConfigVariable(name), name).toBe(true)
  })
})

describe('the image layout, without Docker', () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempDir('atcr-hold-image-')
    // What the final stage holds: dist/ from `npm run build`, package.json, lexicons/ and
    // node_modules side by side. --noCheck: the same emit, without repeating `npm run
    // typecheck`'s work.
    const tsc = spawnSync(
      process.execPath,
      [
        join(ROOT, 'node_modules/typescript/bin/tsc'),
        '-p',
        join(ROOT, 'tsconfig.build.json'),
        '--outDir',
        join(dir, 'dist'),
        '--noCheck',
      ],
      { encoding: 'utf8' },
    )
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0)
    for (const name of ['package.json', 'lexicons', 'node_modules']) {
      await symlink(join(ROOT, name), join(dir, name))
    }
    await mkdir(join(dir, 'data'))
  }, 60_000)
  afterAll(async () => {
    await removeDir(dir)
  })

  it('imports only production dependencies from the compiled code', () => {
    const files = readdirSync(join(dir, 'dist'), {
      recursive: true,
      encoding: 'utf8',
    }).filter((f) => f.endsWith('.js'))
    expect(files).toContain('bin.js')
    const imported = new Set<string>()
    for (const file of files) {
      const js = readFileSync(join(dir, 'dist', file), 'utf8')
      for (const m of js.matchAll(
        /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"'./][^"']*)["']/g,
      )) {
        const spec = m[1]
        if (spec.startsWith('node:')) continue
        const name = spec.startsWith('@')
          ? spec.split('/').slice(0, 2).join('/')
          : spec.split('/')[0]
        imported.add(name)
      }
    }
    expect(imported.size).toBeGreaterThan(5)
    for (const name of imported) {
      expect(Object.keys(pkg.dependencies), name).toContain(name)
    }
    // Relative imports were rewritten from .ts to .js, or Node could not load dist/.
    expect(readFileSync(join(dir, 'dist/bin.js'), 'utf8')).not.toMatch(
      /from ["']\.[^"']*\.ts["']/,
    )
  })

  it('starts with `node dist/bin.js`, serves its version and status page, and exits 0 on SIGTERM', async () => {
    const port = await freePort()
    const proc = spawn(process.execPath, ['dist/bin.js'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        HOLD_HOST: '127.0.0.1',
        HOLD_PORT: String(port),
        HOLD_DATA_DIR: join(dir, 'data'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    proc.stdout.on('data', (d) => (out += d))
    proc.stderr.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((resolve) =>
      proc.once('exit', (code) => resolve(code)),
    )
    try {
      await waitFor(
        () => out.includes('hold started') || proc.exitCode !== null,
      )
      expect(out).toContain('hold started')
      const health = await fetch(`http://127.0.0.1:${port}/xrpc/_health`)
      expect(await health.json()).toEqual({ version: pkg.version })
      const page = await fetch(`http://127.0.0.1:${port}/`)
      expect(page.status).toBe(200)
      expect(await page.text()).toContain('did:web:localhost%3A')
    } finally {
      proc.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    expect(out).toContain('hold stopped')
  })
})
