import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

/** Files that measure latency under load: they run alone, after the rest. */
const TIMED = ['test/flush-yield.test.ts']

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/_temp-root.ts'],
    setupFiles: ['test/_worker-files.ts'],

    projects: [
      {
        extends: true,
        test: {
          name: 'hold',
          include: ['test/**/*.test.ts'],
          exclude: TIMED,
          // Two files at a time even on two cores (vitest's own default there is one): most
          // files wait on a hold they started as much as they compute.
          maxWorkers: Math.max(2, availableParallelism() - 1),
          // A worker process runs file after file instead of a fresh process per file: each
          // file starts its own hold on its own port and data dir, and ends its servers'
          // connections before it ends; a fresh process spent ~1.6 s per file importing the
          // same modules again.
          isolate: false,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'timed',
          include: TIMED,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
