import { randomUUID } from 'node:crypto'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { SPOOL_WORKER } from './car-spool-worker.ts'

/** Limits of getRepo exports (the spooled CAR below is what they send). */
export type ExportLimits = {
  /** getRepo exports one client may have under way at once. */
  perClient: number
  /** getRepo exports under way at once across all clients. */
  total: number
  /** An export still unfinished after this long is cut. */
  maxSeconds: number
  /** An export whose client has read nothing for this long is cut. */
  stallSeconds: number
}

export const DEFAULT_EXPORT_LIMITS: ExportLimits = {
  perClient: 2,
  total: 8,
  maxSeconds: 600,
  stallSeconds: 30,
}

type Answer = {
  id: number
  thread: number
  /** Bytes in the file so far: more is coming. */
  written?: number
  /** The whole CAR's bytes: the worker is done with the file. */
  size?: number
  cancelled?: boolean
  error?: string
}

/**
 * A CAR being written by the export worker into an unlinked temp file, readable as it grows:
 * the bytes before `written` are in the file; `size` is set once the CAR is whole, `failure`
 * if the worker could not finish it. Close it once read (or given up): the file is closed once
 * the worker has let go of it.
 */
export class SpooledCar {
  readonly handle: FileHandle
  /** The id of the thread that writes it. */
  thread = 0
  written = 0
  size: number | undefined
  /**
   * The size, when the CAR fit in the worker's first write (WRITE_BYTES): then it is whole
   * before spool() answers, and getRepo sends it with its `content-length`.
   */
  sizeUpFront: number | undefined
  private answers = 0
  failure: Error | undefined
  /** The whole CAR's size, once written; rejects with the failure. */
  readonly whole: Promise<number>
  /** The flag the worker looks at between writes (1: stop). */
  readonly cancel = new Int32Array(new SharedArrayBuffer(4))
  private waiters: (() => void)[] = []
  private settle!: {
    resolve: (size: number) => void
    reject: (err: Error) => void
  }
  /** Resolves once the worker no longer writes to the file (done, stopped or gone). */
  private readonly released: Promise<void>
  private release!: () => void
  private closing: Promise<void> | undefined

  constructor(handle: FileHandle) {
    this.handle = handle
    this.whole = new Promise<number>((resolve, reject) => {
      this.settle = { resolve, reject }
    })
    // Whoever reads the CAR learns of a failure from `failure`; nobody need await `whole`.
    this.whole.catch(() => undefined)
    this.released = new Promise<void>((resolve) => (this.release = resolve))
  }

  /** Resolves when more of the CAR is written, it is whole, or the worker failed. */
  progress(): Promise<void> {
    if (this.size !== undefined || this.failure) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Stops the worker at its next write if the CAR is not whole, then closes the file. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.size === undefined) Atomics.store(this.cancel, 0, 1)
      await this.released
      await this.handle.close().catch(() => undefined)
    })()
    return this.closing
  }

  /** @internal The worker's answers, as CarSpooler receives them. */
  answer(a: Answer): void {
    this.thread = a.thread
    this.answers++
    if (a.written !== undefined) {
      this.written = a.written
    } else if (a.size !== undefined) {
      this.written = this.size = a.size
      if (this.answers === 1) this.sizeUpFront = a.size
      this.settle.resolve(a.size)
      this.release()
    } else {
      this.fail(
        new Error(
          a.cancelled ? 'export cancelled' : (a.error ?? 'export failed'),
        ),
      )
      return
    }
    this.wake()
  }

  /** @internal The worker answered with a failure, or is gone. */
  fail(err: Error): void {
    if (this.size !== undefined || this.failure) return
    this.failure = err
    this.settle.reject(err)
    this.release()
    this.wake()
  }

  private wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve()
  }
}

/**
 * Writes repo CARs (or, with `since`, the blocks of later revs) into temp files that are
 * unlinked at once, so nothing is left behind by a crash. The work (iterating the blocks,
 * framing them, writing the file) runs in one worker thread with its own read-only connection,
 * a job at a time: on the event loop, a few large exports at once held every other request
 * back for as long as they took. Each export reads one snapshot, the worker's read transaction,
 * which lasts as long as the file takes to write, not as long as a client takes to read it: a
 * slow or stalled download cannot keep the WAL from being checkpointed. The file can be read
 * while it is written (the worker says how far it got after every write of WRITE_BYTES), so a
 * client has its first bytes as soon as the first write is done, not once the whole CAR is.
 * A job whose client has gone away stops at the next write.
 */
export class CarSpooler {
  private readonly path: string
  private readonly idleMs: number
  private worker: Worker | undefined
  private idle: NodeJS.Timeout | undefined
  private readonly jobs = new Map<number, SpooledCar>()
  private nextId = 0
  private closed = false

  /**
   * The worker (a thread, its heap and its SQLite connection) is let go once no export has
   * run for `idleMs`; the next export starts another.
   */
  constructor(databasePath: string, opts: { idleMs?: number } = {}) {
    this.path = databasePath
    this.idleMs = opts.idleMs ?? 30_000
  }

  /** Whether the worker thread is running now. */
  get running(): boolean {
    return this.worker !== undefined
  }

  /**
   * Starts writing a CAR and resolves once its first bytes are in the file (or all of them,
   * for a CAR smaller than one write: then `size` is set). Rejects if the worker fails before
   * that, or `signal` aborts; later, the caller stops the worker with close().
   */
  async spool(
    since: string | undefined,
    signal?: AbortSignal,
  ): Promise<SpooledCar> {
    signal?.throwIfAborted()
    if (this.closed) throw new Error('the hold is shutting down')
    const path = join(tmpdir(), `atcr-hold-export-${randomUUID()}.car`)
    const handle = await open(path, 'wx+', 0o600)
    /** Set once its job is posted: from then on the worker decides when the fd may close. */
    let car: SpooledCar | undefined
    try {
      await unlink(path)
      // The client may have left while the file was made.
      signal?.throwIfAborted()
      const spooled = new SpooledCar(handle)
      this.run(spooled, since)
      car = spooled
      // Until the first bytes: after them, whoever reads the CAR closes it when its client
      // goes away (getRepo's stream is cancelled).
      const onAbort = () => void spooled.close()
      signal?.addEventListener('abort', onAbort, { once: true })
      try {
        await spooled.progress()
      } finally {
        signal?.removeEventListener('abort', onAbort)
      }
      if (spooled.failure) throw spooled.failure
      signal?.throwIfAborted()
      return spooled
    } catch (err) {
      // The fd stays open until the worker has answered: closed earlier, its number could be
      // reused by another file while the worker still writes to it.
      if (car) await car.close()
      else await handle.close()
      throw err
    }
  }

  /** Stops the worker; jobs under way fail. */
  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.idle)
    const worker = this.worker
    this.worker = undefined
    if (worker) await worker.terminate()
    this.failAll(new Error('the hold is shutting down'))
  }

  /**
   * Posts the job, or throws with nothing posted: the hold is stopping, or the worker could not
   * be started or given the job.
   */
  private run(car: SpooledCar, since: string | undefined): void {
    // Checked here too: close() may have run while spool() made the file.
    if (this.closed) throw new Error('the hold is shutting down')
    clearTimeout(this.idle)
    const worker = this.start()
    const id = this.nextId++
    try {
      worker.postMessage({
        id,
        fd: car.handle.fd,
        since,
        cancel: car.cancel,
        writeBytes: WRITE_BYTES,
      })
    } catch (err) {
      if (this.jobs.size === 0) this.stopWhenIdle(worker)
      throw err
    }
    this.jobs.set(id, car)
  }

  private start(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(SPOOL_WORKER, {
      eval: true,
      workerData: { path: this.path },
      // Each row's bytes die young, and the worker keeps nothing live but the rows of one
      // write (external memory, outside these limits): small generations keep a whole-repo
      // export from adding tens of MB to the hold's resident memory, memory the process keeps
      // after the worker is gone (1.27M blocks: +41 MB with both limits, +58 with the young
      // one alone, BENCHMARKS.md).
      resourceLimits: {
        maxYoungGenerationSizeMb: 4,
        maxOldGenerationSizeMb: 16,
      },
    })
    worker.unref()
    worker.on('message', (answer: Answer) => {
      const car = this.jobs.get(answer.id)
      if (!car) return
      if (answer.written === undefined) {
        this.jobs.delete(answer.id)
        if (this.jobs.size === 0) this.stopWhenIdle(worker)
      }
      car.answer(answer)
    })
    const lost = (err: Error) => {
      if (this.worker !== worker) return
      // The next export starts a new worker; those under way fail.
      this.worker = undefined
      this.failAll(err)
    }
    worker.on('error', lost)
    worker.on('exit', (code) =>
      lost(new Error(`export worker exited (${code})`)),
    )
    this.worker = worker
    return worker
  }

  private stopWhenIdle(worker: Worker): void {
    clearTimeout(this.idle)
    this.idle = setTimeout(() => {
      if (this.worker !== worker || this.jobs.size > 0) return
      this.worker = undefined
      void worker.terminate()
    }, this.idleMs)
    this.idle.unref()
  }

  private failAll(err: Error): void {
    for (const car of this.jobs.values()) car.fail(err)
    this.jobs.clear()
  }
}

/**
 * Bytes gathered before each write to the spool file; after each, the worker looks at the
 * cancel flag and says how far it got.
 */
const WRITE_BYTES = 1 << 20
