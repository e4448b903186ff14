import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DiskAssembly } from '../src/blobs/disk-assembly.ts'
import { PartTable } from '../src/blobs/part-table.ts'
import type { ListedPart } from '../src/blobs/store.ts'
import { UploadTable } from '../src/blobs/upload-table.ts'
import { Database } from '../src/db.ts'
import { bodyOf, expectBlobError, sha256 } from './_stores.ts'

describe('a disk assembly', () => {
  let dir: string
  let db: Database
  let parts: PartTable
  const ID = 'upload1'

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atcr-assembly-'))
    db = new Database(join(dir, 'hold.sqlite'))
    parts = new PartTable(db)
    new UploadTable(db).insert({
      id: ID,
      caller: 'did:plc:alice',
      hex: '0'.repeat(64),
      did: null,
      repo: null,
      storeId: null,
      createdAt: Date.now(),
    })
  })
  afterEach(async () => {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  })

  const create = () => DiskAssembly.create(ID, join(dir, ID), parts)
  const chunks = (n: number) =>
    Array.from({ length: n }, () => randomBytes(3000))
  const put = async (
    a: DiskAssembly,
    n: number,
    bytes: Buffer,
  ): Promise<ListedPart> => ({
    partNumber: n,
    etag: (await a.putPart(n, bodyOf(bytes), 1 << 20)).etag,
  })

  it('writes parts that come in order once, and completes with their hash', async () => {
    const a = await create()
    const bytes = chunks(5)
    const listed = []
    for (const [i, b] of bytes.entries()) listed.push(await put(a, i + 1, b))
    const done = await a.complete(listed, 1 << 20)
    expect(a.copiedBytes).toBe(0)
    const blob = Buffer.concat(bytes)
    expect(done).toEqual({
      path: a.assemblyPath,
      hex: sha256(blob),
      size: blob.length,
    })
    expect(await readFile(done.path)).toEqual(blob)
  })

  it('copies each part of a reversed upload into the assembly once', async () => {
    const a = await create()
    const bytes = chunks(4)
    const listed = []
    for (let n = 4; n >= 1; n--) listed.unshift(await put(a, n, bytes[n - 1]))
    const done = await a.complete(listed, 1 << 20)
    expect(a.copiedBytes).toBe(3 * 3000)
    expect(done.hex).toBe(sha256(Buffer.concat(bytes)))
  })

  it('cuts back for a new version of a part in the middle, keeping the parts after it', async () => {
    const a = await create()
    const bytes = chunks(4)
    const listed = []
    listed.push(await put(a, 1, bytes[0]))
    await put(a, 2, randomBytes(3000))
    listed.push(await put(a, 3, bytes[2]))
    listed.push(await put(a, 4, bytes[3]))
    listed.splice(1, 0, await put(a, 2, bytes[1]))
    const done = await a.complete(listed, 1 << 20)
    expect(done.hex).toBe(sha256(Buffer.concat(bytes)))
    expect(await readFile(done.path)).toEqual(Buffer.concat(bytes))
  })

  it('refuses to complete while a part is still streaming in', async () => {
    const a = await create()
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    const slow = (async function* () {
      yield randomBytes(100)
      await held
      yield randomBytes(100)
    })()
    const pending = a.putPart(1, Readable.from(slow), 1 << 20)
    await new Promise((r) => setTimeout(r, 20))
    await expectBlobError(
      a.complete([{ partNumber: 1, etag: 'x' }], 1 << 20),
      'MissingParts',
    )
    release()
    const { etag } = await pending
    const done = await a.complete([{ partNumber: 1, etag }], 1 << 20)
    expect(done.size).toBe(200)
  })

  it('truncates a part that fails mid-stream and takes it again', async () => {
    const a = await create()
    const bytes = chunks(2)
    const p1 = await put(a, 1, bytes[0])
    const broken = Readable.from(
      (async function* () {
        yield randomBytes(1000)
        throw new Error('client went away')
      })(),
    )
    await expect(a.putPart(2, broken, 1 << 20)).rejects.toThrow(
      'client went away',
    )
    const p2 = await put(a, 2, bytes[1])
    expect((await a.complete([p1, p2], 1 << 20)).hex).toBe(
      sha256(Buffer.concat(bytes)),
    )
  })

  it('resumes from its rows after a restart, a cut half done included', async () => {
    const a = await create()
    const bytes = chunks(4)
    const listed = []
    for (const [i, b] of bytes.entries()) listed.push(await put(a, i + 1, b))
    // The state a crash leaves in the middle of a cut: part 2 has a newer version in a file
    // of its own, while parts 3 and 4 are still recorded where they sit in the assembly.
    const newer = randomBytes(3000)
    listed[1] = { partNumber: 2, etag: 'f'.repeat(32) }
    await writeFile(join(dir, ID, `part-2-${listed[1].etag}`), newer)
    parts.put(ID, {
      partNumber: 2,
      etag: listed[1].etag,
      size: 3000,
      offset: null,
    })
    const b = await DiskAssembly.load(ID, join(dir, ID), parts)
    const done = await b.complete(listed, 1 << 20)
    const blob = Buffer.concat([bytes[0], newer, bytes[2], bytes[3]])
    expect(done.hex).toBe(sha256(blob))
    expect(await readFile(done.path)).toEqual(blob)
  })
})
