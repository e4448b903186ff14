import { open, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { carStream } from '../src/api/car-stream.ts'
import {
  DEFAULT_EXPORT_LIMITS,
  SpooledCar,
  type ExportLimits,
} from '../src/repo/car-export.ts'
import { removeDir, tempDir } from './_util.ts'

// The export worker's side is played by the test: it writes the temp file and answers as the
// worker does (how far it got, then the whole size or a failure), so each step can be held.

type Line = { level: number; msg: string }

const setup = async (limits: Partial<ExportLimits> = {}) => {
  const dir = await tempDir()
  dirs.push(dir)
  const path = join(dir, 'spool.car')
  const handle: FileHandle = await open(path, 'wx+', 0o600)
  await unlink(path)
  const car = new SpooledCar(handle)
  let written = 0
  /** Appends bytes to the file as the worker does, and says how far it got. */
  const write = async (bytes: Buffer, last = false) => {
    await handle.write(bytes, 0, bytes.byteLength, written)
    written += bytes.byteLength
    car.answer(
      last
        ? { id: 0, thread: 7, size: written }
        : { id: 0, thread: 7, written },
    )
  }
  const lines: Line[] = []
  const log = pino(
    { level: 'info' },
    { write: (l: string) => void lines.push(JSON.parse(l) as Line) },
  )
  let released = 0
  const stream = carStream(
    car,
    { ...DEFAULT_EXPORT_LIMITS, ...limits },
    undefined,
    log,
    () => released++,
  )
  return {
    car,
    handle,
    write,
    reader: stream.getReader(),
    lines,
    released: () => released,
  }
}

const dirs: string[] = []
afterEach(async () => {
  for (const dir of dirs.splice(0)) await removeDir(dir)
})

/** What a promise has come to after `ms`, or 'pending'. */
const after = <T>(p: Promise<T>, ms: number): Promise<T | 'pending'> =>
  Promise.race([
    p,
    new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms)),
  ])

const bytes = (n: number, fill: number) => Buffer.alloc(n, fill)

describe('a getRepo export read while the worker writes it', () => {
  it('sends each write as soon as the worker reports it, and ends when the CAR is whole', async () => {
    const s = await setup()
    await s.write(bytes(100, 1))
    const first = await s.reader.read()
    expect(Buffer.from(first.value!).equals(bytes(100, 1))).toBe(true)
    // Nothing more is in the file yet: the read waits for the worker, not for the end.
    const next = s.reader.read()
    expect(await after(next, 50)).toBe('pending')
    await s.write(bytes(50, 2), true)
    const second = await next
    expect(Buffer.from(second.value!).equals(bytes(50, 2))).toBe(true)
    expect(await s.reader.read()).toEqual({ done: true, value: undefined })
    expect(s.released()).toBe(1)
    expect(s.car.sizeUpFront).toBeUndefined()
    // The file is closed once read (a closed FileHandle's fd is -1).
    await s.car.close()
    expect(s.handle.fd).toBe(-1)
  })

  it('a CAR whole at the first answer has its size up front', async () => {
    const s = await setup()
    await s.write(bytes(80, 3), true)
    expect(s.car.sizeUpFront).toBe(80)
    const all = await s.reader.read()
    expect(all.value!.byteLength).toBe(80)
    expect((await s.reader.read()).done).toBe(true)
  })

  it('fails the body, never ends it as if whole, when the worker fails after the first bytes', async () => {
    const s = await setup()
    await s.write(bytes(100, 1))
    await s.reader.read()
    const next = s.reader.read()
    s.car.fail(new Error('ENOSPC: no space left on device'))
    await expect(next).rejects.toThrow(/no space left/)
    expect(s.released()).toBe(1)
    expect(s.lines.map((l) => l.msg)).toContain(
      'getRepo export failed after its first bytes',
    )
    await s.car.close()
    expect(s.handle.fd).toBe(-1)
  })

  it('counts only time the client leaves bytes unread towards the stall limit', async () => {
    // Limits and waits far enough apart that a slow file read on a busy machine is not taken
    // for a stall.
    const s = await setup({ stallSeconds: 0.3 })
    await s.write(bytes(100, 1))
    await s.reader.read()
    // The worker takes three stall limits for its next write: the client is waiting, not
    // stalling.
    const next = s.reader.read()
    await new Promise((r) => setTimeout(r, 1_000))
    await s.write(bytes(100, 2))
    expect(Buffer.from((await next).value!).equals(bytes(100, 2))).toBe(true)
    expect(s.released()).toBe(0)
    // Now bytes wait and the client reads nothing: cut, the slot given back, the worker told
    // to stop.
    await s.write(bytes(100, 3))
    await new Promise((r) => setTimeout(r, 1_000))
    expect(s.released()).toBe(1)
    expect(s.lines.map((l) => l.msg)).toContain('getRepo export cut')
    expect(Atomics.load(s.car.cancel, 0)).toBe(1)
    // The worker's answer to the cancel lets the file be closed.
    s.car.answer({ id: 0, thread: 7, cancelled: true })
    await s.car.close()
    expect(s.handle.fd).toBe(-1)
  })
})
