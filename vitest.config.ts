import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts', 'test/setup/docker.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Interop tests share one dockerd; files run in parallel across 2 cores otherwise.
    pool: 'forks',
    reporters: ['default'],
  },
});
