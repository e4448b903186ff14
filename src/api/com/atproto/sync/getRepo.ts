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
    return new Response(carStream(car, limits, c.env?.outgoing, log, release), {
      headers: carHeaders(car.sizeUpFront),
    })
  })
}
