import { describe, expect, it } from 'vitest'
import { ConfigError, envToCfg, readEnv } from '../src/config.ts'
import { servedByFrontend } from '../src/cluster/route.ts'
import { ids } from '../src/ids.ts'

const KEY = 'b2'.repeat(32)
const S3 = {
  HOLD_STORAGE: 's3',
  BUCKET_NAME: 'blobs',
  AWS_ENDPOINT_URL_S3: 'https://fly.storage.tigris.dev',
}

const cluster = (env: Record<string, string>) => envToCfg(readEnv(env)).cluster

const refusal = (env: Record<string, string>): string => {
  try {
    cluster(env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    const message = (err as Error).message
    expect(message).not.toContain('\n')
    return message
  }
  throw new Error('accepted')
}

describe('HOLD_ROLE and its variables', () => {
  it('default to one process that needs no Redis', () => {
    expect(cluster({})).toMatchObject({ role: 'all', redisUrl: undefined })
  })

  it('a frontend proxies to HOLD_WRITER_URL, or on Fly replays on the writer', () => {
    const base = {
      ...S3,
      HOLD_ROLE: 'frontend',
      HOLD_REDIS_URL: 'rediss://default:pw@fly-hold-redis.upstash.io:6379',
      HOLD_SIGNING_KEY: KEY,
    }
    expect(
      cluster({ ...base, HOLD_WRITER_URL: 'http://writer:8080' }),
    ).toMatchObject({
      role: 'frontend',
      writer: { via: 'proxy', url: 'http://writer:8080' },
      bufferPairs: 100_000,
    })
    expect(
      cluster({ ...base, FLY_APP_NAME: 'my-hold', FLY_MACHINE_ID: 'e28' }),
    ).toMatchObject({ writer: { via: 'fly-replay' }, flyMachineId: 'e28' })
  })

  it('on Fly a machine takes its role from its process group unless HOLD_ROLE says otherwise', () => {
    const fly = {
      ...S3,
      FLY_APP_NAME: 'my-hold',
      HOLD_REDIS_URL: 'redis://r:6379',
      HOLD_SIGNING_KEY: KEY,
    }
    expect(cluster({ ...fly, FLY_PROCESS_GROUP: 'frontend' }).role).toBe(
      'frontend',
    )
    expect(cluster({ ...fly, FLY_PROCESS_GROUP: 'writer' }).role).toBe('writer')
    expect(
      cluster({ ...fly, FLY_PROCESS_GROUP: 'frontend', HOLD_ROLE: 'writer' })
        .role,
    ).toBe('writer')
    expect(
      cluster({ ...S3, FLY_APP_NAME: 'my-hold', FLY_PROCESS_GROUP: 'app' })
        .role,
    ).toBe('all')
    // Off Fly the variable means nothing.
    expect(cluster({ FLY_PROCESS_GROUP: 'frontend' }).role).toBe('all')
  })

  it('a writer needs Redis and the shared signing key, and nothing else new', () => {
    expect(
      cluster({
        HOLD_ROLE: 'writer',
        HOLD_REDIS_URL: 'redis://localhost:6379',
        HOLD_SIGNING_KEY: KEY,
      }),
    ).toMatchObject({ role: 'writer', writer: undefined })
  })

  it.each([
    [
      { HOLD_ROLE: 'primary' },
      'HOLD_ROLE must be "all", "writer" or "frontend"',
    ],
    [
      { HOLD_REDIS_URL: 'redis://r:6379' },
      'HOLD_REDIS_URL is for HOLD_ROLE=writer or frontend',
    ],
    [
      { HOLD_WRITER_URL: 'http://w:8080' },
      'HOLD_WRITER_URL is for HOLD_ROLE=frontend',
    ],
    [
      { HOLD_ROLE: 'writer', HOLD_SIGNING_KEY: KEY },
      'HOLD_ROLE=writer needs HOLD_REDIS_URL',
    ],
    [
      {
        ...S3,
        HOLD_ROLE: 'frontend',
        HOLD_SIGNING_KEY: KEY,
        HOLD_WRITER_URL: 'http://w:8080',
      },
      'HOLD_ROLE=frontend needs HOLD_REDIS_URL',
    ],
    [
      {
        HOLD_ROLE: 'frontend',
        HOLD_REDIS_URL: 'redis://r:6379',
        HOLD_SIGNING_KEY: KEY,
        HOLD_WRITER_URL: 'http://w:8080',
      },
      'HOLD_ROLE=frontend needs HOLD_STORAGE=s3',
    ],
    [
      {
        ...S3,
        HOLD_ROLE: 'frontend',
        HOLD_REDIS_URL: 'redis://r:6379',
        HOLD_SIGNING_KEY: KEY,
      },
      'HOLD_ROLE=frontend needs HOLD_WRITER_URL',
    ],
    [
      {
        ...S3,
        HOLD_ROLE: 'frontend',
        HOLD_REDIS_URL: 'redis://r:6379',
        HOLD_WRITER_URL: 'http://w:8080',
      },
      'HOLD_ROLE=frontend needs HOLD_SIGNING_KEY',
    ],
    [
      {
        HOLD_ROLE: 'writer',
        HOLD_REDIS_URL: 'http://r:6379',
        HOLD_SIGNING_KEY: KEY,
      },
      'HOLD_REDIS_URL must be a redis:// or rediss:// URL',
    ],
    [
      {
        ...S3,
        HOLD_ROLE: 'frontend',
        HOLD_REDIS_URL: 'redis://r:6379',
        HOLD_SIGNING_KEY: KEY,
        HOLD_WRITER_URL: 'http://w:8080/xrpc',
      },
      'HOLD_WRITER_URL must be a bare origin',
    ],
    [
      {
        HOLD_ROLE: 'writer',
        HOLD_REDIS_URL: 'redis://r:6379',
        HOLD_SIGNING_KEY: KEY,
        HOLD_REDIS_BUFFER_PAIRS: '0',
      },
      'HOLD_REDIS_BUFFER_PAIRS must be between 1 and',
    ],
    [
      {
        HOLD_ROLE: 'writer',
        HOLD_REDIS_URL: 'redis://r:6379',
        HOLD_SIGNING_KEY: KEY,
        HOLD_REDIS_PREFIX: 'a b',
      },
      'HOLD_REDIS_PREFIX must be',
    ],
  ])('refuses %j with one line naming the variable', (env, message) => {
    expect(refusal(env as Record<string, string>)).toContain(message)
  })

  it('a frontend serves blobs, uploads and stats, and sends everything else to the writer', () => {
    for (const nsid of [
      ids.SyncGetBlob,
      ids.HoldGetStats,
      ids.HoldListStats,
      ids.HoldInitiateUpload,
      ids.HoldUploadPart,
      ids.HoldCompleteUpload,
    ]) {
      expect(servedByFrontend(`/xrpc/${nsid}`)).toBe(true)
    }
    for (const nsid of [
      ids.RepoGetRecord,
      ids.SyncGetRepo,
      ids.SyncSubscribeRepos,
      ids.HoldRequestCrew,
      ids.HoldNotifyManifest,
      ids.HoldSetStats,
    ]) {
      expect(servedByFrontend(`/xrpc/${nsid}`)).toBe(false)
    }
    expect(servedByFrontend('/admin/stats')).toBe(false)
    expect(servedByFrontend('/.well-known/did.json')).toBe(false)
    expect(servedByFrontend('/blobs/sha256/ab')).toBe(true)
  })
})
