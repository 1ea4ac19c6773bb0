import { defineConfig } from 'vitest/config';

export default defineConfig({
  // src/build/context-listing.cts (TypeScript compiled to CommonJS, as the
  // launcher requires it) is TypeScript too; Vite only strips types from .ts.
  oxc: { include: /\.(m?ts|cts|[jt]sx)$/ },
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
