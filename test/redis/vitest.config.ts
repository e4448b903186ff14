import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

/** `npm run test:redis`: tests that start a real redis-server, kept out of `npm test`. */
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/redis/**/*.redis.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/_temp-root.ts'],
    // The cluster tests each run several holds and a Redis: one file at a time.
    fileParallelism: false,
  },
})
