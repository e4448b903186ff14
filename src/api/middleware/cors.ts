import type { Ctx } from '../util.ts'

/**
 * CORS for the read-only methods: any origin may read. The header is set before the handler
 * runs, so it lands in the response as it is built (hono/cors sets it afterwards, which makes
 * the Node adapter materialise every response: a tenth of a getBlob's cost). It goes on the Node
 * response, which adds it to whatever the handler answers (errors too), not through c.header(),
 * which would give every response a fetch API Headers object for the adapter to copy out again.
 */
export const readOnlyCors = async (c: Ctx, next: () => Promise<void>) => {
  if (c.req.method === 'OPTIONS') {
    return c.body(null, 204, {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, HEAD, OPTIONS',
      'access-control-allow-headers':
        c.req.header('access-control-request-headers') ?? '',
      'access-control-max-age': '86400',
    })
  }
  const outgoing = c.env?.outgoing
  if (outgoing) outgoing.setHeader('access-control-allow-origin', '*')
  else c.header('access-control-allow-origin', '*')
  await next()
}
