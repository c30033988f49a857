import { describe, expect, it } from 'vitest';
import {
  intervalSaturation,
  lagSaturation,
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

  it('invalidates a run only when lagging intervals hold more than 1% of its samples', () => {
    const worst = ['devices-0: event-loop delay p99 reached 80ms (limit 50ms)'];
    expect(lagSaturation({ lateIntervals: 0, samples: 1000, lateSamples: 0, worst: [] })).toEqual({
      reasons: [],
      warnings: [],
    });
    // One stalled second holding 9 of 1,000 samples: they cannot move p99.
    const blip = lagSaturation({ lateIntervals: 1, samples: 1000, lateSamples: 9, worst });
    expect(blip.reasons).toEqual([]);
    expect(blip.warnings[0]).toBe(worst[0]);
    expect(blip.warnings[1]).toMatch(
      /^1 lagging worker interval\(s\) held 0\.90% of latency samples/,
    );
    // 11 of 1,000 can be the whole top 1 %: p99 would be the generator's.
    const sat = lagSaturation({ lateIntervals: 2, samples: 1000, lateSamples: 11, worst });
    expect(sat.warnings).toEqual([]);
    expect(sat.reasons).toEqual([
      worst[0],
      '1.10% of latency samples (11 of 1000) were recorded while the generator lagged (limit 1%)',
    ]);
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
