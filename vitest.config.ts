import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at a time even on two cores (vitest's own default there is one): most files
    // wait on a hold they started, in a process of its own, as much as they compute.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // A worker process runs file after file instead of one fresh process per file: the files
    // share no module state (each starts its own hold on its own port and data dir), and a
    // fresh process spent ~1.6 s per file importing the same modules again.
    isolate: false,
    globalSetup: ['test/_temp-root.ts'],
  },
})
