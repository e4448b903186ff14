import type { Register } from './util.ts'

export const register: Register = (app, ctx) => {
  app.get('/xrpc/_health', (c) => {
    // Touches the database, so a broken volume shows here.
    ctx.db.db.prepare('SELECT 1').get()
    return c.json({ version: ctx.cfg.version })
  })
}
