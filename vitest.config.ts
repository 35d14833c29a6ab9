import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real peer processes; two cores cannot run many files at once.
    maxWorkers: 2,
    pool: 'forks'
  }
})
