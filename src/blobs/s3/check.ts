import { ConfigError } from '../../config.ts'
import { S3Error, S3Unreachable, type S3Client } from './client.ts'

/** Which variables named the bucket and the endpoint, so a failure names what to fix. */
export type S3Names = { bucketVar: string; endpointVar: string }

/**
 * The start-up check: HeadBucket, and on a 403 (which has no body) a one-key list to read why.
 * Throws a ConfigError with one line naming what failed and the variable to fix.
 */
export const checkBucket = async (
  client: S3Client,
  names: S3Names,
): Promise<void> => {
  const { bucket } = client
  const { endpoint, accessKeyId, region } = client.signer.target
  const at = `at ${endpoint}`
  try {
    await client.headBucket()
    return
  } catch (err) {
    if (err instanceof S3Unreachable) {
      throw new ConfigError(
        `S3 endpoint ${endpoint} cannot be reached (${err.message}); check ${names.endpointVar}`,
      )
    }
    if (!(err instanceof S3Error)) throw err
    if (err.status === 404) {
      throw new ConfigError(
        `S3 bucket "${bucket}" does not exist ${at} (${names.bucketVar})`,
      )
    }
    if (err.status === 301) {
      throw new ConfigError(
        `S3 bucket "${bucket}" is not in region "${region}" ${at}; set AWS_REGION`,
      )
    }
    if (err.status !== 403) {
      throw new ConfigError(
        `S3 bucket "${bucket}" ${at} answered ${err.status} ${err.code} (${names.bucketVar}, ${names.endpointVar})`,
      )
    }
  }
  const code = await client.listOnePage(1).then(
    () => undefined,
    (err: unknown) => (err instanceof S3Error ? err.code : String(err)),
  )
  if (code === 'InvalidAccessKeyId') {
    throw new ConfigError(
      `S3 access key "${accessKeyId}" is not known ${at} (AWS_ACCESS_KEY_ID)`,
    )
  }
  if (code === 'SignatureDoesNotMatch') {
    throw new ConfigError(
      `S3 secret key does not match access key "${accessKeyId}" ${at} (AWS_SECRET_ACCESS_KEY)`,
    )
  }
  throw new ConfigError(
    `S3 access key "${accessKeyId}" may not use bucket "${bucket}" ${at}${code ? ` (${code})` : ''}; check AWS_ACCESS_KEY_ID and the bucket's permissions`,
  )
}
