/**
 * The spooling, as the worker runs it: a CARv1 header naming the root, then each block as
 * varint(length) CID content, in primary-key order (a CAR's blocks may come in any order, and
 * this is a sequential read). The hold writes every CID as CIDv1 in base32, so the worker turns
 * them into bytes itself, and writes the header's DAG-CBOR by hand:
 * {roots: [tag 42 (0x00 CID)], version: 1}, keys in DAG-CBOR order.
 *
 * A job is `{id, fd, since, cancel, writeBytes}` (`cancel` an Int32Array on shared memory, set
 * to 1 to stop it). The worker answers `{id, thread, written}` after each write of
 * `writeBytes` or more (the file holds that many bytes), then once `{id, thread, size}` when the
 * CAR is whole, `{id, thread, cancelled: true}` or `{id, thread, error}`; after that last
 * answer it no longer touches the file. Plain JavaScript, run with `eval` (CarSpooler).
 */
export const SPOOL_WORKER = `
const { writeSync } = require('node:fs')
const { DatabaseSync } = require('node:sqlite')
const { parentPort, threadId, workerData } = require('node:worker_threads')
const db = new DatabaseSync(workerData.path, { readOnly: true })
const rootStmt = db.prepare('SELECT cid FROM repo_root WHERE id = 1')
const all = db.prepare('SELECT cid, content FROM repo_block')
const later = db.prepare('SELECT cid, content FROM repo_block WHERE repo_rev > ?')
// Rows as arrays, as db.ts's returnArrays makes them (this worker cannot import it): as row
// objects, a million-record export left ~70 MB resident through the worker's old generation
// (as arrays, ~30 MB).
all.setReturnArrays(true)
later.setReturnArrays(true)
const VALUES = new Int8Array(128).fill(-1)
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'
for (let i = 0; i < 32; i++) VALUES[ALPHABET.charCodeAt(i)] = i
const cidBytes = (cid) => {
  if (cid.charCodeAt(0) !== 0x62) throw new Error('a CID not in base32: ' + cid)
  const out = Buffer.allocUnsafe(Math.floor(((cid.length - 1) * 5) / 8))
  let n = 0, bits = 0, value = 0
  for (let i = 1; i < cid.length; i++) {
    const v = VALUES[cid.charCodeAt(i)] ?? -1
    if (v < 0) throw new Error('a CID not in base32: ' + cid)
    value = ((value << 5) | v) & 0xffff
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out[n++] = (value >>> bits) & 0xff
    }
  }
  return out.subarray(0, n)
}
const varint = (n) => {
  const out = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Buffer.from(out)
}
const cborHead = (major, n) =>
  n < 24 ? Buffer.from([(major << 5) | n])
  : n < 256 ? Buffer.from([(major << 5) | 24, n])
  : Buffer.from([(major << 5) | 25, n >> 8, n & 0xff])
const header = (root) => {
  const cid = Buffer.concat([Buffer.from([0]), cidBytes(root)])
  const body = Buffer.concat([
    Buffer.from([0xa2]), cborHead(3, 5), Buffer.from('roots'),
    Buffer.from([0x81, 0xd8, 0x2a]), cborHead(2, cid.length), cid,
    cborHead(3, 7), Buffer.from('version'), Buffer.from([0x01]),
  ])
  return Buffer.concat([varint(body.length), body])
}
const spool = ({ id, fd, since, cancel, writeBytes }) => {
  let chunks = []
  let pending = 0
  let written = 0
  const add = (chunk) => {
    chunks.push(chunk)
    pending += chunk.length
  }
  const flush = () => {
    const buf = Buffer.concat(chunks, pending)
    chunks = []
    pending = 0
    let off = 0
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, written + off)
    written += buf.length
  }
  db.exec('BEGIN')
  try {
    const root = rootStmt.get()
    if (!root) throw new Error('repo has no root')
    add(header(root.cid))
    const rows = since === undefined ? all.iterate() : later.iterate(since)
    try {
      for (const row of rows) {
        const content = row[1]
        const bytes = cidBytes(row[0])
        add(varint(bytes.length + content.length))
        add(bytes)
        add(content)
        if (pending >= writeBytes) {
          flush()
          if (Atomics.load(cancel, 0) !== 0) return undefined
          parentPort.postMessage({ id, thread: threadId, written })
        }
      }
    } finally {
      rows.return?.()
    }
    flush()
    return written
  } finally {
    db.exec('COMMIT')
  }
}
parentPort.on('message', (job) => {
  if (Atomics.load(job.cancel, 0) !== 0) {
    parentPort.postMessage({ id: job.id, thread: threadId, cancelled: true })
    return
  }
  try {
    const size = spool(job)
    parentPort.postMessage(
      size === undefined
        ? { id: job.id, thread: threadId, cancelled: true }
        : { id: job.id, thread: threadId, size },
    )
  } catch (err) {
    parentPort.postMessage({ id: job.id, thread: threadId, error: String(err && err.message || err) })
  }
})
`
