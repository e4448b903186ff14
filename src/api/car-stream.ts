import type { ServerResponse } from 'node:http'
import type { Logger } from '../logger.ts'
import type { ExportLimits, SpooledCar } from '../repo/car-export.ts'

const CHUNK_BYTES = 64 * 1024

/**
 * The spooled CAR as a stream, read as the worker writes it (a CAR that fit in the worker's
 * first write goes with its `content-length`, a larger one chunked). The file is
 * closed and the export's slot given back when the last byte is read, the client goes away
 * (the server cancels the stream), the worker fails (the connection is closed, so the client
 * sees a body cut short, never a CAR that looks whole), or the export is cut: after
 * `maxSeconds` in all, or `stallSeconds` without the client reading while there was something
 * to read.
 */
export const carStream = (
  car: SpooledCar,
  limits: ExportLimits,
  outgoing: ServerResponse | undefined,
  log: Logger,
  release: () => void,
): ReadableStream<Uint8Array> => {
  let position = 0
  let done = false
  /** Set while a read waits for the worker: the client is not the one stalling then. */
  let waiting = false
  const finish = () => {
    if (done) return
    done = true
    clearTimeout(deadline)
    clearTimeout(stall)
    release()
    void car.close()
  }
  const cut = (reason: string) => {
    if (done) return
    log.info({ reason, sent: position, size: car.size }, 'getRepo export cut')
    finish()
    // Closing the connection makes the server cancel the stream; the client sees a short body.
    outgoing?.destroy()
  }
  const deadline = setTimeout(
    () => cut(`not finished after ${limits.maxSeconds} s`),
    limits.maxSeconds * 1000,
  )
  const stall = setTimeout(() => {
    if (waiting) stall.refresh()
    else cut(`client read nothing for ${limits.stallSeconds} s`)
  }, limits.stallSeconds * 1000)
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (done) return
        try {
          while (position >= car.written) {
            if (car.failure) throw car.failure
            if (car.size !== undefined) {
              finish()
              controller.close()
              return
            }
            waiting = true
            await car.progress()
            waiting = false
            if (done) return
          }
          stall.refresh()
          const want = Math.min(CHUNK_BYTES, car.written - position)
          const buf = Buffer.allocUnsafe(want)
          const { bytesRead } = await car.handle.read(buf, 0, want, position)
          if (done) return
          if (bytesRead === 0) {
            throw new Error(
              `the spooled CAR ends at ${position} of ${car.written} bytes`,
            )
          }
          position += bytesRead
          controller.enqueue(buf.subarray(0, bytesRead))
          if (position === car.size) {
            finish()
            controller.close()
          }
        } catch (err) {
          if (done) return
          log.error(
            { err, sent: position, written: car.written },
            'getRepo export failed after its first bytes',
          )
          finish()
          // As with a cut: the server cancels the stream once the connection is closed (an
          // errored stream would also be logged by the adapter, unstructured).
          if (outgoing) outgoing.destroy()
          else controller.error(err)
        }
      },
      cancel() {
        finish()
      },
    },
    { highWaterMark: 0 },
  )
}
