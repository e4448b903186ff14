import { isValidTid } from '@atproto/syntax'
import { InvalidRequestError } from '../../../../errors.ts'
import type { SpooledCar } from '../../../../repo/car-export.ts'
import { clientKey } from '../../../../auth/client-address.ts'
import { carStream } from '../../../car-stream.ts'
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
      car = await ctx.carSpooler.spool(since, signal)
    } catch (err) {
      release()
      // The client left while the CAR was being written: nobody reads an answer.
      if (signal.aborted) return new Response(null, { status: 499 })
      throw err
    }
    let size = car.sizeUpFront
    if (size === undefined && !canChunk(c.env?.incoming)) {
      // An HTTP/1.0 client reads to the connection's end, so a chunked body cut short would
      // look whole to it: it gets the CAR once written, with its length.
      try {
        size = await whole(car, signal)
      } catch (err) {
        release()
        await car.close()
        if (signal.aborted) return new Response(null, { status: 499 })
        throw err
      }
    }
    return new Response(carStream(car, limits, c.env?.outgoing, log, release), {
      headers: carHeaders(size),
    })
  })
}

/** Whether the response can be sent chunked: HTTP/1.1 or later. */
const canChunk = (
  incoming: { httpVersionMajor: number; httpVersionMinor: number } | undefined,
) =>
  !incoming ||
  incoming.httpVersionMajor > 1 ||
  (incoming.httpVersionMajor === 1 && incoming.httpVersionMinor >= 1)

/** The CAR's size once the worker has written all of it; the client leaving stops the worker. */
const whole = async (car: SpooledCar, signal: AbortSignal): Promise<number> => {
  const onAbort = () => void car.close()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    if (signal.aborted) onAbort()
    return await car.whole
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
