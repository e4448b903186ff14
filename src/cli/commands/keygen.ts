import type { Command } from '../command.ts'
import { json } from '../format.ts'

export const keygen: Command = {
  name: 'keygen',
  args: '',
  summary: 'print a new secp256k1 signing key for HOLD_SIGNING_KEY',
  help:
    'Prints HOLD_SIGNING_KEY=<64 hex characters> and the did:key the hold will publish in its ' +
    'DID document with it. Keep the key secret (a Fly secret, a 0600 file). Works offline.',
  json: true,
  run: async ({ io, opts }) => {
    const { Secp256k1Keypair } = await import('@atproto/crypto')
    const key = await Secp256k1Keypair.create({ exportable: true })
    const hex = Buffer.from(await key.export()).toString('hex')
    if (opts.json) return io.out(json({ signingKey: hex, didKey: key.did() }))
    io.out(`HOLD_SIGNING_KEY=${hex}`)
    io.out(`# publishes ${key.did()}`)
  },
}
