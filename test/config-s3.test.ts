import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, envToCfg, envToSecrets, readEnv } from '../src/config.ts'
import { freePort, removeDir, runHoldToExit, tempDir } from './_util.ts'

const configFrom = (env: Record<string, string>) => {
  const raw = readEnv(env)
  return { cfg: envToCfg(raw), secrets: envToSecrets(raw) }
}

const errorFrom = (env: Record<string, string>): ConfigError => {
  try {
    configFrom(env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('no ConfigError')
}

const SECRET = 'tsec_very/secret+key='

/** What `fly storage create` sets, plus HOLD_STORAGE. */
const FLY = {
  HOLD_STORAGE: 's3',
  BUCKET_NAME: 'my-hold',
  AWS_ENDPOINT_URL_S3: 'https://fly.storage.tigris.dev',
  AWS_ACCESS_KEY_ID: 'tid_abc',
  AWS_SECRET_ACCESS_KEY: SECRET,
}

describe('S3 configuration', () => {
  it('is what fly storage create sets, with the region auto for Tigris', () => {
    const { cfg, secrets } = configFrom(FLY)
    expect(cfg.storage).toBe('s3')
    expect(cfg.s3).toEqual({
      endpoint: 'https://fly.storage.tigris.dev',
      region: 'auto',
      bucket: 'my-hold',
      pathStyle: false,
      prefix: '',
      cdnUrl: undefined,
      bucketVar: 'BUCKET_NAME',
      endpointVar: 'AWS_ENDPOINT_URL_S3',
    })
    expect(secrets.s3Credentials).toEqual({
      accessKeyId: 'tid_abc',
      secretAccessKey: SECRET,
      sessionToken: undefined,
    })
    expect(JSON.stringify(cfg)).not.toContain(SECRET)
  })

  it.each([
    ['https://t3.storage.dev', 'auto'],
    ['https://acct.r2.cloudflarestorage.com', 'auto'],
    ['http://localhost:9000', 'us-east-1'],
    ['https://s3.eu-west-1.amazonaws.com', 'us-east-1'],
  ])('defaults the region for %s to %s', (endpoint, region) => {
    const { cfg } = configFrom({ ...FLY, AWS_ENDPOINT_URL_S3: endpoint })
    expect(cfg.s3!.region).toBe(region)
  })

  it('takes the other names, path style, a prefix, a CDN and a session token', () => {
    const { cfg, secrets } = configFrom({
      HOLD_STORAGE: 's3',
      S3_BUCKET: 'images',
      S3_ENDPOINT: 'http://minio.internal:9000/',
      AWS_REGION: 'eu-central-1',
      S3_FORCE_PATH_STYLE: 'true',
      HOLD_S3_PREFIX: '/atcr/hold-1/',
      HOLD_CDN_URL: 'https://cdn.example.com/',
      AWS_ACCESS_KEY_ID: 'minio',
      AWS_SECRET_ACCESS_KEY: SECRET,
      AWS_SESSION_TOKEN: 'tok',
    })
    expect(cfg.s3).toEqual({
      endpoint: 'http://minio.internal:9000',
      region: 'eu-central-1',
      bucket: 'images',
      pathStyle: true,
      prefix: 'atcr/hold-1/',
      cdnUrl: 'https://cdn.example.com',
      bucketVar: 'S3_BUCKET',
      endpointVar: 'S3_ENDPOINT',
    })
    expect(secrets.s3Credentials?.sessionToken).toBe('tok')
    expect(
      configFrom({ ...FLY, HOLD_S3_PATH_STYLE: 'yes' }).cfg.s3!.pathStyle,
    ).toBe(true)
  })

  it('reaches AWS S3 itself from AWS_REGION alone', () => {
    const { AWS_ENDPOINT_URL_S3: _, ...env } = FLY
    const { cfg } = configFrom({ ...env, AWS_REGION: 'eu-west-1' })
    expect(cfg.s3).toMatchObject({
      endpoint: 'https://s3.eu-west-1.amazonaws.com',
      region: 'eu-west-1',
      endpointVar: 'AWS_REGION',
    })
  })

  it('accepts the same value under both names of a variable', () => {
    const { cfg } = configFrom({ ...FLY, S3_BUCKET: 'my-hold' })
    expect(cfg.s3!.bucketVar).toBe('BUCKET_NAME')
  })

  it('keeps uploads 24 hours unless HOLD_UPLOAD_TTL_HOURS says otherwise, on both stores', () => {
    expect(configFrom({}).cfg.uploadTtlMs).toBe(24 * 3600 * 1000)
    expect(configFrom({ HOLD_UPLOAD_TTL_HOURS: '2' }).cfg.uploadTtlMs).toBe(
      2 * 3600 * 1000,
    )
    expect(configFrom(FLY).cfg.uploadTtlMs).toBe(24 * 3600 * 1000)
  })

  it('ignores S3 variables when the storage is disk', () => {
    const { cfg, secrets } = configFrom({ ...FLY, HOLD_STORAGE: 'disk' })
    expect(cfg.s3).toBeUndefined()
    expect(secrets.s3Credentials).toBeUndefined()
  })

  it.each([
    ['BUCKET_NAME', { BUCKET_NAME: '' }],
    ['S3_BUCKET', { BUCKET_NAME: 'a', S3_BUCKET: 'b' }],
    ['BUCKET_NAME', { BUCKET_NAME: 'no/slashes' }],
    ['AWS_ENDPOINT_URL_S3', { AWS_ENDPOINT_URL_S3: '' }],
    ['AWS_ENDPOINT_URL_S3', { AWS_ENDPOINT_URL_S3: 'ftp://x.example' }],
    [
      'AWS_ENDPOINT_URL_S3',
      { AWS_ENDPOINT_URL_S3: 'https://x.example/bucket' },
    ],
    ['AWS_ENDPOINT_URL_S3', { AWS_ENDPOINT_URL_S3: 'fly.storage.tigris.dev' }],
    ['S3_ENDPOINT', { S3_ENDPOINT: 'https://other.example' }],
    ['AWS_REGION', { AWS_REGION: 'EU West' }],
    ['AWS_ACCESS_KEY_ID', { AWS_ACCESS_KEY_ID: '' }],
    ['AWS_SECRET_ACCESS_KEY', { AWS_SECRET_ACCESS_KEY: ' ' }],
    ['HOLD_S3_PATH_STYLE', { HOLD_S3_PATH_STYLE: 'sometimes' }],
    ['S3_FORCE_PATH_STYLE', { S3_FORCE_PATH_STYLE: '2' }],
    ['HOLD_S3_PREFIX', { HOLD_S3_PREFIX: 'a/../b' }],
    ['HOLD_S3_PREFIX', { HOLD_S3_PREFIX: 'a//b' }],
    ['HOLD_S3_PREFIX', { HOLD_S3_PREFIX: 'tab\there' }],
    ['HOLD_CDN_URL', { HOLD_CDN_URL: 'https://cdn.example.com/path' }],
    ['HOLD_UPLOAD_TTL_HOURS', { HOLD_UPLOAD_TTL_HOURS: '0' }],
    ['HOLD_UPLOAD_TTL_HOURS', { HOLD_UPLOAD_TTL_HOURS: 'day' }],
  ])(
    'refuses a bad %s with one line naming it, never the secret',
    (name, change) => {
      const err = errorFrom({ ...FLY, ...change })
      expect(err.message).toContain(name)
      expect(err.message).not.toContain('\n')
      expect(err.message).not.toContain(SECRET)
    },
  )

  it('refuses HOLD_CDN_URL with disk storage, which serves its blobs itself', () => {
    const err = errorFrom({ HOLD_CDN_URL: 'https://cdn.example.com' })
    expect(err.message).toContain('HOLD_CDN_URL')
  })
})

describe('HOLD_STORAGE=s3 at start', () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempDir()
  })
  afterAll(() => removeDir(dir))

  it('stops with one line naming the variable when the endpoint cannot be reached, before touching the data dir', async () => {
    const dataDir = join(dir, 'never-created')
    const { code, output } = await runHoldToExit({
      ...FLY,
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${await freePort()}`,
      HOLD_PORT: '0',
      HOLD_DATA_DIR: dataDir,
    })
    expect(code).toBe(1)
    const lines = output.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/cannot be reached.*AWS_ENDPOINT_URL_S3/)
    expect(output).not.toContain(SECRET)
    expect(existsSync(dataDir)).toBe(false)
  })
})
