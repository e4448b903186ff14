import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ids } from '../../ids.ts'
import type { Command } from '../command.ts'
import { CliError } from '../errors.ts'
import { Progress, bytes } from '../progress.ts'

export const exportRepo: Command = {
  name: 'export',
  args: '<file.car>',
  summary: "the hold's repo as a CAR file (com.atproto.sync.getRepo)",
  help:
    'Streams the whole repo (or, with --since, the blocks newer than a rev) into the file, ' +
    'written under a temporary name and renamed when complete. It verifies with ' +
    "@atproto/repo's verifyRepoCar against the key in the hold's did.json.",
  options: {
    since: {
      type: 'string',
      value: 'REV',
      description: 'only blocks newer than this rev',
    },
  },
  run: async ({ io, args: [file], opts, client }) => {
    const { did } = await client().xrpc<{ did: string }>(
      ids.ServerDescribeServer,
    )
    const res = await client().stream(`/xrpc/${ids.SyncGetRepo}`, {
      did,
      since: opts.since as string | undefined,
    })
    const tmp = `${file}.${process.pid}.part`
    const progress = new Progress({
      stream: io.stderr,
      label: 'exporting',
      total: Number(res.headers.get('content-length') ?? 0),
      unit: 'bytes',
    })
    let written = 0
    try {
      const out = createWriteStream(tmp, { flags: 'wx' })
      const count = new Transform({
        transform(chunk: Buffer, _enc, done) {
          written += chunk.byteLength
          progress.update(written)
          done(null, chunk)
        },
      })
      await pipeline(Readable.fromWeb(res.body!), count, out)
      await rename(tmp, file)
    } catch (err) {
      await rm(tmp, { force: true })
      throw new CliError(`export to ${file} failed: ${(err as Error).message}`)
    } finally {
      progress.finish()
    }
    io.out(`exported the repo of ${did} to ${file} (${bytes(written)})`)
  },
}
