import type { Readable } from 'node:stream'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { SECONDS_BUCKETS } from '../metrics.ts'
import { BlobStoreError } from './errors.ts'
import type {
  BlobStore,
  ByteRange,
  CompleteOptions,
  ListedPart,
  PartUrl,
  SignedUrl,
  StoreUpload,
} from './store.ts'

type Op =
  | 'read'
  | 'readSmall'
  | 'put'
  | 'startUpload'
  | 'putPart'
  | 'completeUpload'
  | 'abortUpload'
  | 'sweepOrphans'

/**
 * A blob store whose operations are counted and timed by kind and result in /metrics, with the
 * bytes of blobs stored. `size` and the URL signers are not: they answer from memory on the
 * getBlob path, and a failing store shows in the operations that follow them.
 */
export class MeteredBlobStore implements BlobStore {
  readonly kind: 'disk' | 's3'
  readonly inner: BlobStore
  private readonly ops: Counter<'store' | 'op' | 'result'>
  private readonly seconds: Histogram<'store' | 'op'>
  private readonly bytes: Counter<'store'>

  constructor(inner: BlobStore, registry: Registry) {
    this.inner = inner
    this.kind = inner.kind
    const registers = [registry]
    this.ops = new Counter({
      name: 'hold_storage_operations_total',
      help: 'Blob store operations, by store (disk, s3), operation and result (ok or the error name)',
      labelNames: ['store', 'op', 'result'],
      registers,
    })
    this.seconds = new Histogram({
      name: 'hold_storage_operation_duration_seconds',
      help: 'Time a blob store operation took, to the end of its body for uploads, by store and operation',
      labelNames: ['store', 'op'],
      buckets: SECONDS_BUCKETS,
      registers,
    })
    this.bytes = new Counter({
      name: 'hold_storage_bytes_stored_total',
      help: 'Bytes of blobs stored (single uploads and completed multipart uploads), by store',
      labelNames: ['store'],
      registers,
    })
  }

  private async timed<T>(op: Op, fn: () => Promise<T>): Promise<T> {
    const started = performance.now()
    let result = 'ok'
    try {
      return await fn()
    } catch (err) {
      result = err instanceof BlobStoreError ? err.code : 'error'
      throw err
    } finally {
      this.ops.inc({ store: this.kind, op, result })
      this.seconds.observe(
        { store: this.kind, op },
        (performance.now() - started) / 1000,
      )
    }
  }

  init(): Promise<void> {
    return this.inner.init()
  }

  size(hex: string): Promise<number | null> {
    return this.inner.size(hex)
  }

  readSmall(hex: string, start: number, length: number): Promise<Buffer> {
    return this.timed('readSmall', () =>
      this.inner.readSmall(hex, start, length),
    )
  }

  read(hex: string, range?: ByteRange): Promise<Readable> {
    return this.timed('read', () => this.inner.read(hex, range))
  }

  directUrl(
    hex: string,
    method: 'GET' | 'HEAD',
    now?: number,
  ): SignedUrl | null {
    return this.inner.directUrl(hex, method, now)
  }

  async put(
    hex: string,
    body: Readable,
    maxBytes: number,
    length?: number,
  ): Promise<number> {
    const size = await this.timed('put', () =>
      this.inner.put(hex, body, maxBytes, length),
    )
    this.bytes.inc({ store: this.kind }, size)
    return size
  }

  startUpload(id: string): Promise<string | null> {
    return this.timed('startUpload', () => this.inner.startUpload(id))
  }

  partUrl(
    upload: StoreUpload,
    partNumber: number,
    now?: number,
  ): PartUrl | null {
    return this.inner.partUrl(upload, partNumber, now)
  }

  putPart(
    upload: StoreUpload,
    partNumber: number,
    body: Readable,
    opts: { length?: number; maxBytes: number },
  ): Promise<{ etag: string; size: number }> {
    return this.timed('putPart', () =>
      this.inner.putPart(upload, partNumber, body, opts),
    )
  }

  async completeUpload(
    upload: StoreUpload,
    hex: string,
    parts: ListedPart[],
    opts: CompleteOptions,
  ): Promise<{ size: number }> {
    const done = await this.timed('completeUpload', () =>
      this.inner.completeUpload(upload, hex, parts, opts),
    )
    this.bytes.inc({ store: this.kind }, done.size)
    return done
  }

  abortUpload(upload: StoreUpload): Promise<void> {
    return this.timed('abortUpload', () => this.inner.abortUpload(upload))
  }

  sweepOrphans(
    isKnown: (id: string) => boolean | Promise<boolean>,
    before: number,
  ): Promise<number> {
    return this.timed('sweepOrphans', () =>
      this.inner.sweepOrphans(isKnown, before),
    )
  }

  ping(): Promise<void> {
    return this.inner.ping()
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}

/** The uploads in flight, read at scrape time. */
export const meterUploads = (
  registry: Registry,
  uploads: { count(): Promise<number> },
): void => {
  new Gauge({
    name: 'hold_uploads_in_flight',
    help: 'Multipart uploads started and not yet completed, aborted or swept',
    registers: [registry],
    async collect() {
      // Kept as it was when they cannot be counted now (a cluster's Redis down).
      await uploads.count().then(
        (n) => this.set(n),
        () => undefined,
      )
    },
  })
}
