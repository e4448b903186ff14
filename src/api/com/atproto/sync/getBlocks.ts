import { parseCid, type Cid } from '@atproto/lex-data'
import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { carBytes } from '../../../../repo/car.ts'
import { SnapshotBlocks } from '../../../../repo/storage.ts'
import { carHeaders, syncParams, type Register } from '../../../util.ts'
import { atprotoQuery } from '../../../xrpc.ts'

/** CIDs one call may ask for; the hold's 8 KiB query limit allows about 140 anyway. */
const MAX_CIDS = 200

/**
 * The repo's blocks named by `cids` (repeated), as a CAR with no root, as the reference PDS
 * answers; any CID the repo does not hold makes it a 400 naming them, as there.
 */
export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncGetBlocks, async (c) => {
    const params = syncParams(c, ctx)
    const raw = params.array('cids', { max: MAX_CIDS, maxLength: 128 })
    if (raw.length === 0) {
      throw new InvalidRequestError('missing required parameter: cids')
    }
    const cids: Cid[] = raw.map((value) => {
      try {
        return parseCid(value)
      } catch {
        throw new InvalidRequestError(`cids must be CIDs, got "${value}"`)
      }
    })
    const found = await ctx.db.readSnapshot(async (reader) => {
      const blocks = new SnapshotBlocks(reader)
      return cids.map((cid) => [cid, blocks.getBytesSync(cid)] as const)
    })
    const missing = found.filter(([, bytes]) => !bytes).map(([cid]) => cid)
    if (missing.length > 0) {
      throw new InvalidRequestError(
        `Could not find cids: ${missing.map(String).join(',')}`,
      )
    }
    const car = carBytes(
      null,
      found.map(([cid, bytes]) => [cid.bytes, bytes!] as const),
    )
    return c.body(new Uint8Array(car), 200, carHeaders(car.byteLength))
  })
}
