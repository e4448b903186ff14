import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import type { Register } from '../../../util.ts'
import { atprotoQuery } from '../../../xrpc.ts'

/**
 * subscribeRepos is served on WebSocket upgrades (src/firehose/subscribe-repos.ts), which never
 * reach the app; a plain request is told how to subscribe.
 */
export const register: Register = (app) => {
  atprotoQuery(app, ids.SyncSubscribeRepos, () => {
    throw new InvalidRequestError(
      'subscribeRepos is a WebSocket subscription: connect with ws:// or wss:// (an upgrade request)',
    )
  })
}
