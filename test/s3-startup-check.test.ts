import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../src/config.ts'
import { checkBucket } from '../src/blobs/s3/check.ts'
import { S3Client } from '../src/blobs/s3/client.ts'
import type { S3Target } from '../src/blobs/s3/sigv4.ts'
import { startS3, type TestS3 } from './_s3.ts'
import { freePort } from './_util.ts'

const NAMES = { bucketVar: 'BUCKET_NAME', endpointVar: 'AWS_ENDPOINT_URL_S3' }

describe('the S3 start-up check', () => {
  let s3: TestS3
  beforeAll(async () => {
    s3 = await startS3()
  })
  afterAll(() => s3.close())

  /** The one line the check stops the start with, for a bucket reached this way. */
  const failure = async (change: Partial<S3Target>): Promise<string> => {
    const client = new S3Client(
      { ...s3.target, ...change },
      { retryDelaysMs: [], timeoutMs: 2000 },
    )
    try {
      await checkBucket(client, NAMES)
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      const { message } = err as ConfigError
      expect(message).not.toContain('\n')
      expect(message).not.toContain(s3.secretAccessKey)
      return message
    } finally {
      client.close()
    }
    throw new Error('the check passed')
  }

  it('passes for a bucket the credentials may use', async () => {
    const client = new S3Client(s3.target)
    await expect(checkBucket(client, NAMES)).resolves.toBeUndefined()
    client.close()
  })

  it('names a bucket that does not exist', async () => {
    expect(await failure({ bucket: 'no-such-bucket' })).toBe(
      `S3 bucket "no-such-bucket" does not exist at ${s3.endpoint} (BUCKET_NAME)`,
    )
  })

  it('names an access key the endpoint does not know', async () => {
    expect(await failure({ accessKeyId: 'AKIDUNKNOWN' })).toBe(
      `S3 access key "AKIDUNKNOWN" is not known at ${s3.endpoint} (AWS_ACCESS_KEY_ID)`,
    )
  })

  it('names a secret key that does not match its access key', async () => {
    expect(await failure({ secretAccessKey: 'not-the-secret' })).toBe(
      `S3 secret key does not match access key "${s3.accessKeyId}" at ${s3.endpoint} (AWS_SECRET_ACCESS_KEY)`,
    )
  })

  it('names an endpoint nothing answers at', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`
    const message = await failure({ endpoint })
    expect(message).toMatch(
      new RegExp(
        `^S3 endpoint ${endpoint} cannot be reached .*; check AWS_ENDPOINT_URL_S3$`,
      ),
    )
  })
})
