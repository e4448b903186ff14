import { getRecords } from '@atproto/repo'
import { NotFoundError } from '../../../../errors.ts'
import { SnapshotBlocks } from '../../../../repo/storage.ts'
import { carHeaders, syncParams, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncGetRecord, async (c) => {
    const params = syncParams(c, ctx)
    const collection = params.nsid('collection')
    const rkey = params.rkey('rkey')
    // The proof is built from one database snapshot, so a commit cannot remove blocks under
    // it, and a read never waits behind the writer's queue.
    const car = await ctx.db.readSnapshot(async (reader) => {
      const blocks = new SnapshotBlocks(reader)
      if (!blocks.recordCidSync(collection, rkey)) return null
      const root = blocks.rootSync()
      if (!root) return null
      const chunks: Uint8Array[] = []
      for await (const chunk of getRecords(blocks, root, [
        { collection, rkey },
      ])) {
        chunks.push(chunk)
      }
      return Buffer.concat(chunks)
    })
    if (!car) {
      throw new NotFoundError(
        `Could not find record: at://${ctx.cfg.did}/${collection}/${rkey}`,
        'RecordNotFound',
      )
    }
    return c.body(car, 200, carHeaders(car.byteLength))
  })
}
