/**
 * An S3 stand-in for benchmarks that drains every body and keeps only object sizes: it answers
 * what the hold's S3 store sends (HeadBucket, lists, multipart uploads, parts, copies, deletes)
 * and verifies nothing, so a measurement through it is the hold's own cost. Prints
 * `{"endpoint": ...}` when it listens.
 */
import http from 'node:http'

const objects = new Map<string, number>()
const uploads = new Map<string, Map<number, number>>()
let nextId = 0

const xml = (res: http.ServerResponse, body: string) => {
  res.setHeader('content-type', 'application/xml')
  res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`)
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://sink')
  // Path style: /<bucket>/<key>
  const [, , ...rest] = url.pathname.split('/')
  const key = decodeURIComponent(rest.join('/'))
  const q = url.searchParams
  let size = 0
  req.on('data', (chunk: Buffer) => (size += chunk.length))
  req.on('end', () => {
    if (!key) {
      if (req.method === 'HEAD') return res.end()
      if (q.has('uploads')) {
        return xml(
          res,
          '<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>',
        )
      }
      return xml(
        res,
        '<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>',
      )
    }
    if (req.method === 'HEAD') {
      const known = objects.get(key)
      res.statusCode = known === undefined ? 404 : 200
      if (known !== undefined) res.setHeader('content-length', known)
      return res.end()
    }
    if (req.method === 'POST' && q.has('uploads')) {
      const id = `upload${++nextId}`
      uploads.set(id, new Map())
      return xml(
        res,
        `<InitiateMultipartUploadResult><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`,
      )
    }
    if (req.method === 'POST' && q.has('uploadId')) {
      const parts = uploads.get(q.get('uploadId')!)
      objects.set(
        key,
        [...(parts?.values() ?? [])].reduce((a, b) => a + b, 0),
      )
      uploads.delete(q.get('uploadId')!)
      return xml(
        res,
        '<CompleteMultipartUploadResult><ETag>"done"</ETag></CompleteMultipartUploadResult>',
      )
    }
    if (req.method === 'PUT' && q.has('partNumber')) {
      uploads.get(q.get('uploadId')!)?.set(Number(q.get('partNumber')), size)
      res.setHeader('etag', `"part${q.get('partNumber')}-${size}"`)
      return res.end()
    }
    if (req.method === 'PUT' && req.headers['x-amz-copy-source']) {
      const from = decodeURIComponent(String(req.headers['x-amz-copy-source']))
        .split('/')
        .slice(2)
        .join('/')
      objects.set(key, objects.get(from) ?? 0)
      return xml(
        res,
        '<CopyObjectResult><ETag>"copy"</ETag></CopyObjectResult>',
      )
    }
    if (req.method === 'PUT') {
      objects.set(key, size)
      res.setHeader('etag', `"put-${size}"`)
      return res.end()
    }
    if (req.method === 'DELETE') {
      if (q.has('uploadId')) uploads.delete(q.get('uploadId')!)
      else objects.delete(key)
      res.statusCode = 204
      return res.end()
    }
    res.statusCode = 404
    res.end()
  })
})
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  console.log(JSON.stringify({ endpoint: `http://127.0.0.1:${port}` }))
})
