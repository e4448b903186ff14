import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { removeDir, runHoldToExit, tempDir } from './_util.ts'

/** The configuration an operator's environment produces, as bin.ts builds it. */
const configFrom = (env: Record<string, string>) => {
  const raw = readEnv(env)
  return { cfg: envToCfg(raw), secrets: envToSecrets(raw) }
}

const errorFrom = (env: Record<string, string>): unknown => {
  try {
    configFrom(env)
  } catch (err) {
    return err
  }
  return undefined
}

const HEX_KEY = 'a1'.repeat(32)

describe('readEnv', () => {
  it('maps every HOLD_* variable and LOG_LEVEL to its field and ignores everything else', () => {
    expect(
      readEnv({
        HOLD_HOST: '127.0.0.1',
        HOLD_PORT: '9000',
        HOLD_PUBLIC_URL: 'https://hold.example.com',
        HOLD_DATA_DIR: '/var/lib/hold',
        HOLD_OWNER_DID: 'did:plc:owner',
        HOLD_PUBLIC: 'false',
        HOLD_ALLOW_ALL_CREW: 'true',
        HOLD_CREW_JOINS_PER_HOUR: '5',
        HOLD_PLC_URL: 'http://plc.local',
        HOLD_SIGNING_KEY: HEX_KEY,
        HOLD_STORAGE: 'disk',
        HOLD_MAX_BLOB_BYTES: '100',
        HOLD_STATS_FLUSH_MS: '500',
        HOLD_STATS_PERSIST_MS: '100',
        HOLD_STATS_MAX_PER_MINUTE: '60',
        HOLD_NEW_PAIRS_PER_HOUR: '500',
        HOLD_FAILED_AUTH_PER_MINUTE: '10',
        HOLD_REPO_CACHE_MB: '8',
        HOLD_FIREHOSE_RETENTION_HOURS: '24',
        HOLD_CRAWLERS: 'https://bsky.network',
        HOLD_TRUSTED_PROXY_HEADER: 'Fly-Client-IP',
        HOLD_TRUSTED_PROXY_HOPS: '2',
        HOLD_ADMIN_PASSWORD: 'hunter2',
        HOLD_DEV_ALLOW_LOCAL_DIDS: 'true',
        LOG_LEVEL: 'debug',
        PORT: '1234',
        HOME: '/root',
      }),
    ).toEqual({
      host: '127.0.0.1',
      port: '9000',
      publicUrl: 'https://hold.example.com',
      dataDir: '/var/lib/hold',
      ownerDid: 'did:plc:owner',
      public: 'false',
      allowAllCrew: 'true',
      crewJoinsPerHour: '5',
      plcUrl: 'http://plc.local',
      signingKey: HEX_KEY,
      storage: 'disk',
      maxBlobBytes: '100',
      statsFlushMs: '500',
      statsPersistMs: '100',
      statsMaxPerMinute: '60',
      newPairsPerHour: '500',
      failedAuthPerMinute: '10',
      repoCacheMb: '8',
      firehoseRetentionHours: '24',
      crawlers: 'https://bsky.network',
      trustedProxyHeader: 'Fly-Client-IP',
      trustedProxyHops: '2',
      adminPassword: 'hunter2',
      devAllowLocalDids: 'true',
      logLevel: 'debug',
    })
  })
})

describe('envToCfg and envToSecrets', () => {
  it('give the documented defaults for an empty environment', () => {
    const { cfg, secrets } = configFrom({})
    expect(cfg).toEqual({
      host: '0.0.0.0',
      port: 8080,
      publicUrl: 'http://localhost:8080',
      did: 'did:web:localhost%3A8080',
      handle: 'localhost',
      dataDir: './data',
      ownerDid: undefined,
      public: undefined,
      allowAllCrew: undefined,
      crewJoinsPerHour: 30,
      plcUrl: 'https://plc.directory',
      storage: 'disk',
      uploadTtlMs: 86400000,
      maxBlobBytes: 10737418240,
      statsFlushMs: 60000,
      statsPersistMs: 25,
      statsHistoryDays: 400,
      statsMaxPerMinute: 0,
      newPairsPerHour: 100,
      failedAuthPerMinute: 60,
      repoCacheMb: 32,
      firehoseRetentionHours: 72,
      crawlers: [],
      trustedProxyHeader: undefined,
      devAllowLocalDids: false,
      trustedProxyHops: 1,
      logLevel: 'info',
      version: '0.0.0',
      countSource: 'blob',
      cluster: {
        role: 'all',
        redisUrl: undefined,
        redisPrefix: 'atcr-hold',
        bufferPairs: 100_000,
        writer: undefined,
        flyMachineId: undefined,
      },
    })
    expect(secrets).toEqual({
      signingKeyHex: undefined,
      adminPassword: undefined,
    })
  })

  it('treat empty and blank values as unset', () => {
    const { cfg, secrets } = configFrom({
      HOLD_PORT: '',
      HOLD_PUBLIC_URL: '  ',
      HOLD_OWNER_DID: '',
      HOLD_PUBLIC: '',
      HOLD_ALLOW_ALL_CREW: ' ',
      HOLD_SIGNING_KEY: '',
      LOG_LEVEL: '',
    })
    expect(cfg.port).toBe(8080)
    expect(cfg.did).toBe('did:web:localhost%3A8080')
    expect(cfg.ownerDid).toBeUndefined()
    expect(cfg.public).toBeUndefined()
    expect(cfg.allowAllCrew).toBeUndefined()
    expect(cfg.logLevel).toBe('info')
    expect(secrets.signingKeyHex).toBeUndefined()
  })

  it.each([
    [
      'https://hold.example.com',
      'did:web:hold.example.com',
      'hold.example.com',
    ],
    [
      'https://hold.example.com/',
      'did:web:hold.example.com',
      'hold.example.com',
    ],
    [
      'https://hold.example.com:443',
      'did:web:hold.example.com',
      'hold.example.com',
    ],
    [
      'https://hold.example.com:8443',
      'did:web:hold.example.com%3A8443',
      'hold.example.com',
    ],
    [
      'http://Hold.Example.COM:8080',
      'did:web:hold.example.com%3A8080',
      'hold.example.com',
    ],
  ])(
    'derive the hold DID from HOLD_PUBLIC_URL=%s as %s',
    (publicUrl, did, handle) => {
      const { cfg } = configFrom({ HOLD_PUBLIC_URL: publicUrl })
      expect(cfg.did).toBe(did)
      expect(cfg.handle).toBe(handle)
      expect(cfg.publicUrl).toBe(new URL(publicUrl).origin)
      expect(cfg.publicUrl.endsWith('/')).toBe(false)
    },
  )

  it('derive the default public URL and DID from HOLD_PORT', () => {
    const { cfg } = configFrom({ HOLD_PORT: '9000' })
    expect(cfg.port).toBe(9000)
    expect(cfg.publicUrl).toBe('http://localhost:9000')
    expect(cfg.did).toBe('did:web:localhost%3A9000')
  })

  it('keep HOLD_PUBLIC_URL independent of the listen port', () => {
    const { cfg } = configFrom({
      HOLD_PORT: '3000',
      HOLD_PUBLIC_URL: 'https://hold.example.com',
    })
    expect(cfg.port).toBe(3000)
    expect(cfg.did).toBe('did:web:hold.example.com')
  })

  it.each([
    ['true', true],
    ['TRUE', true],
    ['1', true],
    ['yes', true],
    ['on', true],
    ['false', false],
    ['False', false],
    ['0', false],
    ['no', false],
    ['off', false],
  ])('read HOLD_PUBLIC=%s as %s', (value, expected) => {
    const { cfg } = configFrom({
      HOLD_PUBLIC: value,
      HOLD_ALLOW_ALL_CREW: value,
      HOLD_DEV_ALLOW_LOCAL_DIDS: value,
    })
    expect(cfg.public).toBe(expected)
    expect(cfg.allowAllCrew).toBe(expected)
    expect(cfg.devAllowLocalDids).toBe(expected)
  })

  it('accept well-formed values and trim surrounding blanks', () => {
    const { cfg, secrets } = configFrom({
      HOLD_PORT: ' 9001 ',
      HOLD_OWNER_DID: ' did:plc:ewvi7nxzyoun6zhxrhs64oiz ',
      HOLD_SIGNING_KEY: HEX_KEY.toUpperCase(),
      HOLD_STATS_FLUSH_MS: '250',
      HOLD_STATS_PERSIST_MS: '250',
      HOLD_TRUSTED_PROXY_HEADER: 'Fly-Client-IP',
      HOLD_ADMIN_PASSWORD: 'hunter2',
      LOG_LEVEL: 'warn',
    })
    expect(cfg.port).toBe(9001)
    expect(cfg.ownerDid).toBe('did:plc:ewvi7nxzyoun6zhxrhs64oiz')
    expect(cfg.statsFlushMs).toBe(250)
    expect(cfg.statsPersistMs).toBe(250)
    expect(cfg.trustedProxyHeader).toBe('fly-client-ip')
    expect(cfg.logLevel).toBe('warn')
    expect(secrets.signingKeyHex).toBe(HEX_KEY)
    expect(secrets.adminPassword).toBe('hunter2')
  })

  it.each([
    ['HOLD_PORT', 'abc'],
    ['HOLD_PORT', '70000'],
    ['HOLD_PORT', '-1'],
    ['HOLD_PORT', '80.5'],
    ['HOLD_PUBLIC_URL', 'hold.example.com'],
    ['HOLD_PUBLIC_URL', 'https://'],
    ['HOLD_PUBLIC_URL', 'https://hold.example.com/hold'],
    ['HOLD_PUBLIC_URL', 'https://hold.example.com/?x=1'],
    ['HOLD_PUBLIC_URL', 'https://user:pw@hold.example.com'],
    ['HOLD_PUBLIC_URL', 'ftp://hold.example.com'],
    ['HOLD_PUBLIC_URL', 'file:///srv/hold'],
    ['HOLD_PUBLIC_URL', 'http://[::1]:8080'],
    ['HOLD_OWNER_DID', 'alice'],
    ['HOLD_OWNER_DID', 'at://did:plc:owner'],
    ['HOLD_SIGNING_KEY', 'abc123'],
    ['HOLD_SIGNING_KEY', 'a1'.repeat(31) + 'a'],
    ['HOLD_SIGNING_KEY', 'a1'.repeat(33)],
    ['HOLD_SIGNING_KEY', 'zz'.repeat(32)],
    ['HOLD_PUBLIC', 'maybe'],
    ['HOLD_ALLOW_ALL_CREW', '2'],
    ['HOLD_DEV_ALLOW_LOCAL_DIDS', 'sure'],
    ['HOLD_STATS_FLUSH_MS', '-1'],
    ['HOLD_STATS_FLUSH_MS', '5'],
    ['HOLD_STATS_PERSIST_MS', '4'],
    ['HOLD_STATS_PERSIST_MS', '1001'],
    ['HOLD_STATS_PERSIST_MS', 'soon'],
    ['HOLD_STATS_MAX_PER_MINUTE', '1.5'],
    ['HOLD_TRUSTED_PROXY_HOPS', '0'],
    ['HOLD_NEW_PAIRS_PER_HOUR', '-5'],
    ['HOLD_CREW_JOINS_PER_HOUR', 'many'],
    ['HOLD_REPO_CACHE_MB', '-1'],
    ['HOLD_REPO_CACHE_MB', 'lots'],
    ['HOLD_FIREHOSE_RETENTION_HOURS', '0'],
    ['HOLD_FIREHOSE_RETENTION_HOURS', 'forever'],
    ['HOLD_CRAWLERS', 'bsky.network'],
    ['HOLD_CRAWLERS', 'https://bsky.network/xrpc'],
    ['HOLD_CRAWLERS', 'https://bsky.network,ftp://relay.example.com'],
    ['HOLD_CRAWLERS', 'https://relay.example.com?x=1'],
    ['HOLD_MAX_BLOB_BYTES', '0'],
    ['HOLD_STORAGE', 'nfs'],
    ['HOLD_PLC_URL', 'ftp://plc.example.com'],
    ['LOG_LEVEL', 'loud'],
  ])('refuse %s=%s with a ConfigError naming the variable', (name, value) => {
    const err = errorFrom({ [name]: value })
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).message).toContain(name)
    expect((err as ConfigError).message).not.toContain('\n')
  })

  it('read HOLD_CRAWLERS as relay origins, without repeats', () => {
    const { cfg } = configFrom({
      HOLD_CRAWLERS:
        ' https://bsky.network , https://Relay.Example.com:8443/,,https://bsky.network',
    })
    expect(cfg.crawlers).toEqual([
      'https://bsky.network',
      'https://relay.example.com:8443',
    ])
  })

  it('never repeat a bad signing key in its error message', () => {
    const almostKey = 'c3'.repeat(31) + 'xy'
    const err = errorFrom({ HOLD_SIGNING_KEY: almostKey })
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).message).not.toContain('c3c3c3')
  })
})

describe('a bad configuration at start', () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempDir()
  })
  afterAll(() => removeDir(dir))

  it('exits with code 1 and one line naming HOLD_PORT, without a stack trace or a data dir', async () => {
    const dataDir = join(dir, 'never-created')
    const { code, output } = await runHoldToExit({
      HOLD_PORT: 'abc',
      HOLD_DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
    })
    expect(code).toBe(1)
    const lines = output.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain('HOLD_PORT')
    expect(lines[0]).toContain('"abc"')
    expect(output).not.toMatch(/^\s+at /m)
    expect(existsSync(dataDir)).toBe(false)
  })

  it('exits with code 1 and one line naming HOLD_SIGNING_KEY when the key is not 32 bytes of hex', async () => {
    const { code, output } = await runHoldToExit({
      HOLD_PORT: '0',
      HOLD_DATA_DIR: join(dir, 'bad-key'),
      HOLD_SIGNING_KEY: 'not-a-key',
    })
    expect(code).toBe(1)
    const lines = output.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain('HOLD_SIGNING_KEY')
    expect(output).not.toContain('not-a-key')
  })
})
