import http from 'node:http'
import net from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import {
  removeDir,
  spawnHold,
  startHold,
  tempDir,
  xrpc,
  type SpawnedHold,
} from './_util.ts'

/** A TCP connection to the hold, and a promise of the moment the hold closes it. */
const connect = async (port: number) => {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  socket.on('data', () => undefined)
  await new Promise((resolve) => socket.once('connect', resolve))
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => resolve(Date.now())),
  )
  return { socket, closed }
}

describe('a stop with idle connections open', () => {
  const dirs: string[] = []
  const running: SpawnedHold[] = []
  afterAll(async () => {
    for (const hold of running) {
      if (hold.proc.exitCode === null && hold.proc.signalCode === null) {
        hold.proc.kill('SIGKILL')
        await hold.exited
      }
    }
    for (const dir of dirs) await removeDir(dir)
  })

  it('SIGTERM closes a connection that never sent a request and an idle keep-alive one at once, not after the grace period', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const hold = await spawnHold({ dataDir })
    running.push(hold)

    const silent = await connect(hold.port)
    const agent = new http.Agent({ keepAlive: true })
    const keptAlive = await new Promise<net.Socket>((resolve, reject) => {
      const req = http.get(`${hold.url}/xrpc/_health`, { agent }, (res) => {
        res.resume()
        res.on('end', () => resolve(req.socket!))
      })
      req.on('error', reject)
    })
    const keptAliveClosed = new Promise((r) => keptAlive.once('close', r))

    hold.proc.kill('SIGTERM')
    const { code } = await hold.exited
    expect(code).toBe(0)
    await silent.closed
    await keptAliveClosed
    expect(hold.output()).not.toContain('still open after the grace period')
    expect(hold.output()).toContain('hold stopped')
    agent.destroy()
  }, 30_000)

  it('gives a connection that has sent part of a request the grace period, while one that sent nothing closes at once', async () => {
    const h = await startHold()
    dirs.push(h.dataDir)
    h.hold.drainGraceMs = 1500
    expect((await xrpc(h.url, '_health')).status).toBe(200)
    const silent = await connect(h.port)
    const partial = await connect(h.port)
    partial.socket.write('GET /xrpc/_health HTTP/1.1\r\nHost: x\r\n')
    // The partial request has reached the hold before the stop begins.
    await new Promise((r) => setTimeout(r, 100))

    const stopping = Date.now()
    const stopped = h.stop()
    const silentAt = await silent.closed
    const partialAt = await partial.closed
    await stopped
    expect(silentAt).toBeLessThan(partialAt)
    expect(partialAt - stopping).toBeGreaterThanOrEqual(1000)
  })
})
