import { describe, expect, it } from 'vitest';
import {
  intervalSaturation,
  runSaturation,
  SelfMonitor,
  saturationLimits,
} from '../../loadgen/self-check.js';

describe('generator self-check', () => {
  it('marks an interval whose event-loop delay p99 passed the limit', () => {
    expect(
      intervalSaturation('devices-0', { elu: 0.5, lagP99Ms: 12, lagMaxMs: 40 }),
    ).toBeUndefined();
    expect(
      intervalSaturation('devices-0', {
        elu: 0.5,
        lagP99Ms: saturationLimits.maxLagP99Ms + 1,
        lagMaxMs: 90,
      }),
    ).toMatch(/^devices-0: event-loop delay p99 reached 51ms \(limit 50ms\)$/);
  });

  it('marks a run with a thread busy past the limit or skipped sends', () => {
    const idle = { worker: 'devices-0', elu: 0.3, lagP99Ms: 1, lagMaxMs: 2 };
    expect(runSaturation([idle], 0)).toEqual([]);
    expect(runSaturation([idle, { ...idle, worker: 'publisher', elu: 0.97 }], 3)).toEqual([
      'publisher: busy 97% of the run (limit 90%)',
      'publisher: 3 scheduled sends skipped (too many requests in flight)',
    ]);
  });

  it('sees a blocked event loop as delay and utilisation', async () => {
    const monitor = new SelfMonitor();
    // Let the delay monitor take its first samples (it needs a previous tick to measure from).
    await new Promise((r) => setTimeout(r, 40));
    // Block this thread for ~120 ms: exactly what a saturated worker does to its timers.
    const until = performance.now() + 120;
    while (performance.now() < until) {
      /* busy */
    }
    await new Promise((r) => setTimeout(r, 30));
    const check = monitor.interval();
    expect(check.lagMaxMs).toBeGreaterThan(60);
    expect(check.elu).toBeGreaterThan(0.3);
    expect(intervalSaturation('w', { ...check, lagP99Ms: check.lagMaxMs })).toBeDefined();
    monitor.total();
  });
});
