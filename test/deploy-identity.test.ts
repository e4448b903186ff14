import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'smol-toml'
import { afterEach, describe, expect, it } from 'vitest'
import { ids } from '../src/ids.ts'
import { ConfigError, envToCfg, readEnv } from '../src/config.ts'
import type { DidDocument } from '../src/identity.ts'
import type { HoldServer } from '../src/server.ts'
import { startLogged } from './_logged.ts'
import {
  freePort,
  removeDir,
  ROOT,
  runHoldToExit,
  tempDir,
  xrpc,
} from './_util.ts'

const running: HoldServer[] = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.destroy()))
  await Promise.all(dirs.splice(0).map(removeDir))
})

const newDataDir = async () => {
  const dir = await tempDir()
  dirs.push(dir)
  return dir
}

const cfgOf = (env: Record<string, string>) => envToCfg(readEnv(env))

const errorOf = (env: Record<string, string>): unknown => {
  try {
    cfgOf(env)
  } catch (err) {
    return err
  }
  return undefined
}

const PLAIN_HTTP = 'is plain http'
const describeDid = async (url: string) =>
  (await xrpc<{ did: string }>(url, ids.ServerDescribeServer)).body.did

describe('where the hold runs: Fly, NODE_ENV=production, a laptop', () => {
  it('reads FLY_APP_NAME, NODE_ENV and HOLD_REBIND_FROM', () => {
    expect(
      readEnv({
        FLY_APP_NAME: 'my-hold',
        NODE_ENV: 'production',
        HOLD_REBIND_FROM: 'did:web:localhost%3A8080',
      }),
    ).toMatchObject({
      flyAppName: 'my-hold',
      nodeEnv: 'production',
      rebindFrom: 'did:web:localhost%3A8080',
    })
  })

  it('defaults the public URL on Fly to https://<app>.fly.dev, and HOLD_PUBLIC_URL still wins', () => {
    const fly = parse(readFileSync(join(ROOT, 'fly.toml'), 'utf8')) as {
      env: Record<string, string>
    }
    // What a Fly machine sees: fly.toml's [env] plus the variables Fly sets itself.
    expect(cfgOf({ ...fly.env, FLY_APP_NAME: 'My-Hold' })).toMatchObject({
      publicUrl: 'https://my-hold.fly.dev',
      did: 'did:web:my-hold.fly.dev',
      handle: 'my-hold.fly.dev',
      publicUrlFrom: 'FLY_APP_NAME',
      deployedBy: 'FLY_APP_NAME',
    })
    expect(
      cfgOf({
        FLY_APP_NAME: 'my-hold',
        HOLD_PUBLIC_URL: 'https://hold.example.com',
      }),
    ).toMatchObject({
      did: 'did:web:hold.example.com',
      publicUrlFrom: 'HOLD_PUBLIC_URL',
      deployedBy: 'FLY_APP_NAME',
    })
  })

  it('tells deployed from a laptop by FLY_APP_NAME or NODE_ENV=production only', () => {
    expect(cfgOf({ NODE_ENV: 'production' }).deployedBy).toBe(
      'NODE_ENV=production',
    )
    const laptops: Record<string, string>[] = [
      {},
      { NODE_ENV: 'development' },
      { NODE_ENV: 'test' },
    ]
    for (const env of laptops) {
      const cfg = cfgOf(env)
      expect(cfg.deployedBy).toBeUndefined()
      expect(cfg.publicUrlFrom).toBeUndefined()
      expect(cfg.did).toBe('did:web:localhost%3A8080')
    }
  })

  it.each([
    ['FLY_APP_NAME', 'my_hold!'],
    ['FLY_APP_NAME', '-hold'],
    ['HOLD_REBIND_FROM', 'localhost:8080'],
    ['HOLD_REBIND_FROM', 'https://hold.example.com'],
  ])('refuses %s=%s in one line naming it', (name, value) => {
    const err = errorOf({ [name]: value })
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain(name)
    expect((err as Error).message).not.toContain('\n')
  })

  it('stops a first start with NODE_ENV=production and no HOLD_PUBLIC_URL in one line, binding nothing', async () => {
    const dataDir = await newDataDir()
    const { code, output } = await runHoldToExit({
      HOLD_HOST: '127.0.0.1',
      HOLD_PORT: '0',
      HOLD_DATA_DIR: dataDir,
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
    })
    expect(code).toBe(1)
    const lines = output.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^atcr-hold: HOLD_PUBLIC_URL is not set/)
    expect(lines[0]).toContain('NODE_ENV=production')
    expect(lines[0]).toContain('did:web:localhost%3A8080')
    expect(output).not.toMatch(/^\s+at /m)

    // Nothing was bound to localhost: the same data dir starts under the URL set afterwards.
    const h = await startLogged(
      dataDir,
      { NODE_ENV: 'production', HOLD_PUBLIC_URL: 'https://hold.deploy.test' },
      { running },
    )
    expect(await describeDid(h.url)).toBe('did:web:hold.deploy.test')
    expect(h.warnings()).not.toContainEqual(
      expect.stringContaining('HOLD_PUBLIC_URL'),
    )
  })

  it('starts on Fly with no HOLD_PUBLIC_URL as did:web:<app>.fly.dev, and a laptop start with no settings as localhost', async () => {
    const fly = await startLogged(
      await newDataDir(),
      { FLY_APP_NAME: 'my-hold', NODE_ENV: 'production' },
      { running },
    )
    expect(await describeDid(fly.url)).toBe('did:web:my-hold.fly.dev')
    const doc = (await (
      await fetch(`${fly.url}/.well-known/did.json`)
    ).json()) as DidDocument
    expect(doc.service[0].serviceEndpoint).toBe('https://my-hold.fly.dev')
    expect(fly.warnings()).toEqual([])

    const port = await freePort()
    const laptop = await startLogged(await newDataDir(), {}, { port, running })
    expect(await describeDid(laptop.url)).toBe(`did:web:localhost%3A${port}`)
    expect(laptop.warnings()).toEqual([])
  })

  it('keeps a deployed hold already bound to localhost running, with a warning naming HOLD_PUBLIC_URL and HOLD_REBIND_FROM', async () => {
    const dataDir = await newDataDir()
    const port = await freePort()
    const first = await startLogged(dataDir, {}, { port, running })
    const did = first.did
    await first.stop()

    const again = await startLogged(
      dataDir,
      { NODE_ENV: 'production' },
      { port, running },
    )
    expect(await describeDid(again.url)).toBe(did)
    const warned = again.warnings().filter((m) => m.includes('deployed'))
    expect(warned).toHaveLength(1)
    expect(warned[0]).toContain('set HOLD_PUBLIC_URL')
    expect(warned[0]).toContain(`HOLD_REBIND_FROM=${did}`)
  })

  it('takes an explicit localhost HOLD_PUBLIC_URL as meant, even deployed', async () => {
    const port = await freePort()
    const h = await startLogged(
      await newDataDir(),
      {
        NODE_ENV: 'production',
        HOLD_PUBLIC_URL: `http://localhost:${port}`,
      },
      { port, running },
    )
    expect(h.did).toBe(`did:web:localhost%3A${port}`)
    expect(h.warnings()).toEqual([])
  })
})

describe('a plain-http public URL', () => {
  it('warns at start, in one line naming HOLD_PUBLIC_URL, for a host others reach', async () => {
    for (const url of ['http://hold.example.com', 'http://10.0.0.5:8080']) {
      const h = await startLogged(
        await newDataDir(),
        { HOLD_PUBLIC_URL: url },
        { running },
      )
      const warned = h.warnings().filter((m) => m.includes(PLAIN_HTTP))
      expect(warned).toHaveLength(1)
      expect(warned[0]).toMatch(/^HOLD_PUBLIC_URL is plain http for /)
      expect(warned[0]).toContain(`https://${new URL(url).hostname}`)
      await h.stop()
    }
  })

  it('does not warn for https, localhost or a loopback address', async () => {
    for (const url of [
      'https://hold.example.com',
      'http://localhost:8080',
      'http://127.0.0.1:8080',
      'http://hold.localhost:8080',
    ]) {
      const h = await startLogged(
        await newDataDir(),
        { HOLD_PUBLIC_URL: url },
        { running },
      )
      expect(h.warnings()).toEqual([])
      await h.stop()
    }
  })
})

describe('the README’s Fly steps', () => {
  it('set HOLD_ADMIN_PASSWORD, generated at random, with the first secrets, before the first deploy', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const steps = readme.slice(readme.indexOf('## Deploy to Fly.io'))
    const secrets = steps.indexOf('fly secrets set HOLD_PUBLIC_URL=')
    const deploy = steps.indexOf('fly deploy')
    expect(secrets).toBeGreaterThan(0)
    expect(secrets).toBeLessThan(deploy)
    const line = steps.slice(secrets, steps.indexOf('\n', secrets))
    expect(line).toContain('HOLD_ADMIN_PASSWORD=')
    expect(steps.slice(0, secrets)).toContain(
      'HOLD_ADMIN_PASSWORD=$(openssl rand -base64 32)',
    )
  })
})
