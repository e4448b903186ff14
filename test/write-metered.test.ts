import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meterBytes, writeMetered } from '../src/blobs/byte-check.ts'
import { removeDir, tempDir } from './_util.ts'

const tooLarge = () => new Error('too large')

describe('a metered write to a new file', () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempDir()
  })
  afterAll(async () => {
    await removeDir(dir)
  })

  it('leaves no file behind when it fails before the file is open, every time', async () => {
    // The body's first chunk is over the limit and ready at once: the write fails as soon as
    // it starts (a write stream that opened its file itself could still be opening it then).
    for (let i = 0; i < 50; i++) {
      await expect(
        writeMetered(
          Readable.from([randomBytes(100)]),
          meterBytes(10, tooLarge),
          join(dir, `part-${i}`),
        ),
      ).rejects.toThrow('too large')
      expect(await readdir(dir)).toEqual([])
    }
  })

  it('leaves no file behind when it fails part way', async () => {
    const body = Readable.from([randomBytes(8), randomBytes(8), randomBytes(8)])
    await expect(
      writeMetered(body, meterBytes(20, tooLarge), join(dir, 'late')),
    ).rejects.toThrow('too large')
    expect(await readdir(dir)).toEqual([])
  })

  it('writes what it was given within the limit, and leaves a file it did not create', async () => {
    const bytes = randomBytes(1000)
    const meter = meterBytes(1000, tooLarge)
    const path = join(dir, 'whole')
    await writeMetered(Readable.from([bytes]), meter, path)
    expect(meter.size).toBe(1000)
    expect(await readFile(path)).toEqual(bytes)
    // The name is taken: the open fails, and the file that was there stays.
    await expect(
      writeMetered(
        Readable.from([randomBytes(5)]),
        meterBytes(10, tooLarge),
        path,
      ),
    ).rejects.toThrow(/EEXIST/)
    expect(await readFile(path)).toEqual(bytes)
  })
})
