/**
 * Worker processes run file after file (vitest.config.ts), so an unhandled error may surface
 * while a later file runs than the one that left it behind. This names, with each such error,
 * the files the process ran before it, in order.
 */
import { beforeAll, expect } from 'vitest'

const state = globalThis as { workerFiles?: string[] }

if (!state.workerFiles) {
  const files: string[] = []
  state.workerFiles = files
  const ran = () => `a worker process that ran, in order: ${files.join(', ')}`
  // A listener of its own would keep vitest from reporting the rejection, so it is thrown
  // on, as an uncaught exception, which fails the run as the rejection would have.
  process.on('unhandledRejection', (reason) => {
    console.error(`an unhandled rejection in ${ran()}`)
    throw reason
  })
  process.on('uncaughtExceptionMonitor', () => {
    console.error(`an uncaught exception in ${ran()}`)
  })
}

beforeAll(() => {
  const path = expect.getState().testPath ?? '(unknown file)'
  state.workerFiles!.push(path.replace(/^.*\/test\//, 'test/'))
})
