import { defineConfig } from 'vitest/config'

// npm run test:interop: the hold and atcr-hold/client against a real PDS and PLC. Each file
// starts one network in beforeAll; importing the PDS dominates its time.
export default defineConfig({
  test: {
    include: ['test/interop/**/*.interop.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    globalSetup: ['test/_temp-root.ts'],
  },
})
