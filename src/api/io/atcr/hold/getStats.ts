import { parseRepoParam } from '../../../../stats/rkey.ts'
import { InvalidRequestError } from '../../../../errors.ts'
import { Params, type Register } from '../../../util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/io.atcr.hold.getStats', (c) => {
    const params = new Params(c)
    const did = params.did('did')
    const repo = parseRepoParam(did, params.string('repo', { maxLength: 512 }))
    if (!repo) throw new InvalidRequestError('missing required parameter: repo')
    return c.json(ctx.stats.get(did, repo))
  })
}
