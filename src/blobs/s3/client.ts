import { createHash } from 'node:crypto'
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  encodeKey,
  queryString,
  SigV4,
  uriEncode,
  type S3Target,
} from './sigv4.ts'
import { escapeXml, xmlElements, xmlText } from './xml.ts'

/** An error answer of the S3 server: its HTTP status and its `<Code>`. */
export class S3Error extends Error {
  readonly status: number
  readonly code: string
  constructor(status: number, code: string, message: string) {
    super(`${status} ${code}${message ? `: ${message}` : ''}`)
    this.status = status
    this.code = code
  }
}

/** No answer at all: the endpoint refused, dropped or stalled the connection. */
export class S3Unreachable extends Error {}

/** A body of known length: bytes, or a stream sent with UNSIGNED-PAYLOAD. */
export type S3Body = Buffer | string | { stream: Readable; length: number }

export type S3Response = {
  status: number
  headers: IncomingMessage['headers']
  body: IncomingMessage
}

type RequestOptions = {
  body?: S3Body
  headers?: Record<string, string>
  /** x-amz-* headers, signed. */
  amz?: Record<string, string>
  /** Keep the socket timeout while the body is read (off for downloads a client reads slowly). */
  keepTimeout?: boolean
}

export type S3ClientOptions = {
  /** How long a connection may stay silent before the request fails. */
  timeoutMs?: number
  /** Waits before each retry of a request that can be sent again. */
  retryDelaysMs?: number[]
  maxSockets?: number
}

const EMPTY_SHA256 = createHash('sha256').update('').digest('hex')
const RETRY_STATUSES = new Set([500, 502, 503, 504])

/**
 * The S3 calls a hold makes, signed with SigV4 (no SDK). Request bodies of a known length are
 * streamed with UNSIGNED-PAYLOAD. Requests that can be sent again (no body or a buffered one,
 * not a POST) are retried on a dropped connection or a 5xx.
 */
export class S3Client {
  readonly signer: SigV4
  private readonly agent: http.Agent
  private readonly transport: typeof http | typeof https
  private readonly hostname: string
  private readonly port: number
  private readonly timeoutMs: number
  private readonly retryDelaysMs: number[]

  constructor(target: S3Target, opts: S3ClientOptions = {}) {
    this.signer = new SigV4(target)
    const url = new URL(target.endpoint)
    const secure = url.protocol === 'https:'
    this.transport = secure ? https : http
    this.port = Number(url.port) || (secure ? 443 : 80)
    this.hostname = this.signer.host.replace(/:\d+$/, '')
    this.timeoutMs = opts.timeoutMs ?? 30_000
    this.retryDelaysMs = opts.retryDelaysMs ?? [100, 400]
    this.agent = new this.transport.Agent({
      keepAlive: true,
      maxSockets: opts.maxSockets ?? 64,
    })
  }

  get bucket(): string {
    return this.signer.target.bucket
  }

  close(): void {
    this.agent.destroy()
  }

  /** Sends one signed request; answers 2xx responses with their body unread, throws otherwise. */
  async request(
    method: string,
    key: string | undefined,
    query: Record<string, string> = {},
    opts: RequestOptions = {},
  ): Promise<S3Response> {
    const replayable =
      method !== 'POST' &&
      (opts.body === undefined ||
        typeof opts.body === 'string' ||
        Buffer.isBuffer(opts.body))
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.send(method, key, query, opts)
      } catch (err) {
        const transient =
          err instanceof S3Unreachable ||
          (err instanceof S3Error && RETRY_STATUSES.has(err.status))
        if (!replayable || !transient || attempt >= this.retryDelaysMs.length) {
          throw err
        }
        await sleep(this.retryDelaysMs[attempt])
      }
    }
  }

  private async send(
    method: string,
    key: string | undefined,
    query: Record<string, string>,
    opts: RequestOptions,
  ): Promise<S3Response> {
    const path = this.signer.pathFor(key)
    const { body } = opts
    let payloadHash = 'UNSIGNED-PAYLOAD'
    let length: number | undefined
    let bytes: Buffer | undefined
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      bytes = Buffer.from(body)
      payloadHash = createHash('sha256').update(bytes).digest('hex')
      length = bytes.length
    } else if (body) {
      length = body.length
    } else if (method === 'PUT' || method === 'POST') {
      payloadHash = EMPTY_SHA256
      length = 0
    }
    const headers: Record<string, string> = {
      ...opts.headers,
      ...this.signer.signHeaders(method, path, query, opts.amz, payloadHash),
      host: this.signer.host,
    }
    if (length !== undefined) headers['content-length'] = String(length)
    let req: http.ClientRequest | undefined
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req = this.transport.request(
        {
          method,
          hostname: this.hostname,
          port: this.port,
          path: path + queryString(query),
          headers,
          agent: this.agent,
          timeout: this.timeoutMs,
        },
        resolve,
      )
      const sent = req
      sent.on('timeout', () =>
        sent.destroy(
          new S3Unreachable(`no answer within ${this.timeoutMs} ms`),
        ),
      )
      sent.on('error', (err) => {
        if (typeof body === 'object' && 'stream' in body) {
          body.stream.unpipe(sent)
        }
        reject(
          err instanceof S3Unreachable
            ? err
            : new S3Unreachable(err.message, { cause: err }),
        )
      })
      if (body === undefined || bytes !== undefined) {
        sent.end(bytes)
      } else if (typeof body === 'object' && 'stream' in body) {
        body.stream.on('error', (err) => sent.destroy(err))
        body.stream.pipe(sent)
      }
    })
    const status = res.statusCode ?? 0
    if (status >= 300) {
      const text = method === 'HEAD' ? '' : await readText(res)
      // An early answer to a streamed body: stop sending it.
      if (typeof body === 'object' && 'stream' in body) {
        body.stream.unpipe(req)
        req?.destroy()
      }
      throw new S3Error(
        status,
        xmlText(text, 'Code') ??
          String(res.headers['x-amz-error-code'] ?? codeOfStatus(status)),
        xmlText(text, 'Message') ?? '',
      )
    }
    if (!opts.keepTimeout) res.socket?.setTimeout(0)
    return { status, headers: res.headers, body: res }
  }

  /** The text of a 2xx answer; an `<Error>` in it (S3 sends some with 200) is thrown. */
  private async xml(
    method: string,
    key: string | undefined,
    query: Record<string, string>,
    opts: RequestOptions = {},
  ): Promise<string> {
    const res = await this.request(method, key, query, {
      ...opts,
      keepTimeout: true,
    })
    const text = await readText(res.body)
    if (/<Error>/.test(text)) {
      throw new S3Error(
        500,
        xmlText(text, 'Code') ?? 'InternalError',
        xmlText(text, 'Message') ?? '',
      )
    }
    return text
  }

  private async drained(
    method: string,
    key: string | undefined,
    query: Record<string, string> = {},
    opts: RequestOptions = {},
  ): Promise<S3Response> {
    const res = await this.request(method, key, query, {
      ...opts,
      keepTimeout: true,
    })
    res.body.resume()
    return res
  }

  async headBucket(): Promise<void> {
    await this.drained('HEAD', undefined)
  }

  /** One ListObjectsV2 page of at most `maxKeys` keys (the start-up check reads its error). */
  async listOnePage(maxKeys: number): Promise<string[]> {
    const xml = await this.xml('GET', undefined, {
      'list-type': '2',
      'max-keys': String(maxKeys),
    })
    return xmlElements(xml, 'Contents').map((c) => xmlText(c, 'Key') ?? '')
  }

  async headObject(key: string): Promise<{ size: number } | null> {
    try {
      const res = await this.drained('HEAD', key)
      return { size: Number(res.headers['content-length']) }
    } catch (err) {
      if (err instanceof S3Error && err.status === 404) return null
      throw err
    }
  }

  getObject(
    key: string,
    range?: { start: number; end: number },
  ): Promise<S3Response> {
    return this.request(
      'GET',
      key,
      {},
      range ? { headers: { range: `bytes=${range.start}-${range.end}` } } : {},
    )
  }

  async putObject(key: string, body: S3Body): Promise<string> {
    const res = await this.drained('PUT', key, {}, { body })
    return String(res.headers.etag ?? '')
  }

  async deleteObject(key: string): Promise<void> {
    await this.drained('DELETE', key)
  }

  private copySource(key: string): string {
    return `/${uriEncode(this.bucket)}/${encodeKey(key)}`
  }

  async copyObject(from: string, to: string): Promise<void> {
    await this.xml(
      'PUT',
      to,
      {},
      { amz: { 'x-amz-copy-source': this.copySource(from) } },
    )
  }

  async createMultipartUpload(key: string): Promise<string> {
    const xml = await this.xml('POST', key, { uploads: '' })
    const id = xmlText(xml, 'UploadId')
    if (!id)
      throw new S3Error(500, 'InternalError', 'no UploadId in the answer')
    return id
  }

  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: S3Body,
  ): Promise<string> {
    const res = await this.drained(
      'PUT',
      key,
      { partNumber: String(partNumber), uploadId },
      { body },
    )
    return String(res.headers.etag ?? '')
  }

  async uploadPartCopy(
    key: string,
    uploadId: string,
    partNumber: number,
    from: string,
    range: { start: number; end: number },
  ): Promise<string> {
    const xml = await this.xml(
      'PUT',
      key,
      { partNumber: String(partNumber), uploadId },
      {
        amz: {
          'x-amz-copy-source': this.copySource(from),
          'x-amz-copy-source-range': `bytes=${range.start}-${range.end}`,
        },
      },
    )
    return xmlText(xml, 'ETag') ?? ''
  }

  async completeMultipartUpload(
    key: string,
    uploadId: string,
    parts: Array<{ partNumber: number; etag: string }>,
  ): Promise<void> {
    const listed = parts
      .map(({ partNumber, etag }) => {
        const quoted = etag.startsWith('"') ? etag : `"${etag}"`
        return `<Part><PartNumber>${partNumber}</PartNumber><ETag>${escapeXml(quoted)}</ETag></Part>`
      })
      .join('')
    await this.xml(
      'POST',
      key,
      { uploadId },
      {
        body: `<CompleteMultipartUpload>${listed}</CompleteMultipartUpload>`,
        headers: { 'content-type': 'application/xml' },
      },
    )
  }

  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    await this.drained('DELETE', key, { uploadId })
  }

  /** Every unfinished multipart upload under `prefix`, all pages. */
  async listMultipartUploads(
    prefix: string,
  ): Promise<Array<{ key: string; uploadId: string; initiated: number }>> {
    const uploads = []
    const query: Record<string, string> = { uploads: '', prefix }
    for (;;) {
      const xml = await this.xml('GET', undefined, query)
      for (const u of xmlElements(xml, 'Upload')) {
        uploads.push({
          key: xmlText(u, 'Key') ?? '',
          uploadId: xmlText(u, 'UploadId') ?? '',
          initiated: Date.parse(xmlText(u, 'Initiated') ?? ''),
        })
      }
      const keyMarker = xmlText(xml, 'NextKeyMarker')
      if (xmlText(xml, 'IsTruncated') !== 'true' || !keyMarker) return uploads
      query['key-marker'] = keyMarker
      query['upload-id-marker'] = xmlText(xml, 'NextUploadIdMarker') ?? ''
    }
  }

  /** Every object under `prefix`, all pages. */
  async listObjects(
    prefix: string,
  ): Promise<Array<{ key: string; lastModified: number }>> {
    const objects = []
    const query: Record<string, string> = { 'list-type': '2', prefix }
    for (;;) {
      const xml = await this.xml('GET', undefined, query)
      for (const c of xmlElements(xml, 'Contents')) {
        objects.push({
          key: xmlText(c, 'Key') ?? '',
          lastModified: Date.parse(xmlText(c, 'LastModified') ?? ''),
        })
      }
      const token = xmlText(xml, 'NextContinuationToken')
      if (xmlText(xml, 'IsTruncated') !== 'true' || !token) return objects
      query['continuation-token'] = token
    }
  }
}

const codeOfStatus = (status: number): string =>
  status === 404
    ? 'NotFound'
    : status === 403
      ? 'Forbidden'
      : status === 301
        ? 'PermanentRedirect'
        : http.STATUS_CODES[status]?.replace(/\s/g, '') || 'Unknown'

export const readText = async (res: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
