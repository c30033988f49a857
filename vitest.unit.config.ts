import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * `npm run test:unit`: the pure, fast files, for an answer while the code is
 * still in mind (under a minute here). They start no node, agent, browser or
 * Redis and open no socket: parsers, measuring primitives, scenarios, gates,
 * reports, placement, the herd model. `npm test` runs everything, as CI does.
 */
export default defineConfig({
  test: {
    testTimeout: base.test?.testTimeout,
    hookTimeout: base.test?.hookTimeout,
    include: [
      'test/architecture/**/*.test.ts',
      'test/core/**/*.test.ts',
      'test/bin/**/*.test.ts',
      'test/scenarios/**/*.test.ts',
      'test/reports/**/*.test.ts',
      'test/run/preflight.test.ts',
      'test/loadgen/{placement,reconnect,self-check,traffic-ledgers}.test.ts',
      'test/capacity/{simulate,plan}.test.ts',
      'test/server/{token,metrics}.test.ts',
    ],
    // A real browser renders report.html: seconds, not milliseconds.
    exclude: ['test/reports/html.test.ts'],
  },
});
