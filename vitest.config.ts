import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // End-to-end tests start real server processes and worker threads; on a
    // 2-core machine running files in parallel only makes them fight for CPU.
    fileParallelism: false,
  },
});
