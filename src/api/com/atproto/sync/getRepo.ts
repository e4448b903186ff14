import type { ServerResponse } from 'node:http'
import { isValidTid } from '@atproto/syntax'
import { InvalidRequestError } from '../../../../errors.ts'
import type { Logger } from '../../../../logger.ts'
import {
  spoolRepoCar,
  type ExportLimits,
  type SpooledCar,
} from '../../../../repo/car-export.ts'
import { clientKey } from '../../../../auth/client-address.ts'
import { ExportSlots } from '../../../export-slots.ts'
import { carHeaders, syncParams, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  const limits = ctx.exportLimits
  const slots = new ExportSlots(limits)
  const log = ctx.log.repo
  atprotoQuery(app, ids.SyncGetRepo, async (c) => {
    const params = syncParams(c, ctx)
    const since = params.string('since', { maxLength: 32 }) || undefined
    if (since !== undefined && !isValidTid(since)) {
      throw new InvalidRequestError(
        `since must be a repo rev (TID), got "${since}"`,
      )
    }
    if (c.req.method === 'HEAD') return c.body(null, 200, carHeaders())
    const release = slots.take(clientKey(ctx, c, undefined))
    const signal = c.req.raw.signal
    let car: SpooledCar
    try {
      car = await spoolRepoCar(ctx.db, since, signal)
    } catch (err) {
      release()
      // The client left while the CAR was being written: nobody reads an answer.
      if (signal.aborted) return new Response(null, { status: 499 })
      throw err
    }
    return new Response(
      sendSpooled(car, limits, c.env?.outgoing, log, release),
      { headers: carHeaders(car.size) },
    )
  })
}

const CHUNK_BYTES = 64 * 1024

/**
 * The spooled CAR as a stream. The file is closed and the export's slot given back when the
 * last byte is read, the client goes away (the server cancels the stream), or the export is
 * cut: after `maxSeconds` in all, or `stallSeconds` without the client reading.
 */
const sendSpooled = (
  car: SpooledCar,
  limits: ExportLimits,
  outgoing: ServerResponse | undefined,
  log: Logger,
  release: () => void,
): ReadableStream<Uint8Array> => {
  let position = 0
  let done = false
  const finish = () => {
    if (done) return
    done = true
    clearTimeout(deadline)
    clearTimeout(stall)
    release()
    car.handle.close().catch(() => undefined)
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
  const stall = setTimeout(
    () => cut(`client read nothing for ${limits.stallSeconds} s`),
    limits.stallSeconds * 1000,
  )
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (done) return
        stall.refresh()
        try {
          const want = Math.min(CHUNK_BYTES, car.size - position)
          const buf = Buffer.allocUnsafe(want)
          const { bytesRead } =
            want > 0
              ? await car.handle.read(buf, 0, want, position)
              : { bytesRead: 0 }
          if (done) return
          position += bytesRead
          if (bytesRead > 0) controller.enqueue(buf.subarray(0, bytesRead))
          if (bytesRead === 0 || position >= car.size) {
            finish()
            controller.close()
          }
        } catch (err) {
          finish()
          controller.error(err)
        }
      },
      cancel() {
        finish()
      },
    },
    { highWaterMark: 0 },
  )
}
