import type { DatabaseSync } from 'node:sqlite'
import { parseCid } from '@atproto/lex-data'
import { writeCarStream, type CarBlock } from '@atproto/repo'
import { isValidTid } from '@atproto/syntax'
import { InvalidRequestError } from '../../../../errors.ts'
import {
  assertOwnRepo,
  CAR_TYPE,
  Params,
  type Register,
} from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncGetRepo, (c) => {
    const params = new Params(c)
    assertOwnRepo(ctx, params.required('did'), { allowHandle: false })
    const since = params.string('since', { maxLength: 32 }) || undefined
    if (since !== undefined && !isValidTid(since)) {
      throw new InvalidRequestError(
        `since must be a repo rev (TID), got "${since}"`,
      )
    }
    const headers = {
      'content-type': CAR_TYPE,
      'x-content-type-options': 'nosniff',
    }
    if (c.req.method === 'HEAD') return c.body(null, 200, headers)
    return new Response(carSnapshot(ctx.db.openReader(), since), { headers })
  })
}

/**
 * The repo as a CAR stream, from a reader connection of its own: one snapshot for the whole
 * stream, so commits made while a slow client downloads cannot tear it. The connection closes
 * when the stream ends, fails or is cancelled.
 */
const carSnapshot = (
  db: DatabaseSync,
  since: string | undefined,
): ReadableStream<Uint8Array> => {
  let open = true
  const close = () => {
    if (open) {
      open = false
      db.close()
    }
  }
  let iter: AsyncIterator<Uint8Array>
  try {
    db.exec('BEGIN')
    const root = db.prepare('SELECT cid FROM repo_root WHERE id = 1').get() as
      { cid: string } | undefined
    if (!root) throw new Error('repo has no root')
    // In primary-key order (a CAR's blocks may come in any order): a sequential read.
    const rows =
      since === undefined
        ? db.prepare('SELECT cid, content FROM repo_block').iterate()
        : db
            .prepare('SELECT cid, content FROM repo_block WHERE repo_rev > ?')
            .iterate(since)
    const blocks = function* (): Generator<CarBlock> {
      for (const row of rows) {
        const { cid, content } = row as { cid: string; content: Uint8Array }
        yield { cid: parseCid(cid), bytes: content }
      }
    }
    iter = writeCarStream(parseCid(root.cid), toAsync(blocks()))[
      Symbol.asyncIterator
    ]()
  } catch (err) {
    close()
    throw err
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await iter.next()
        if (next.done) {
          close()
          controller.close()
        } else {
          controller.enqueue(next.value)
        }
      } catch (err) {
        close()
        controller.error(err)
      }
    },
    cancel() {
      close()
    },
  })
}

async function* toAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items
}
