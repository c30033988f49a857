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

  it('marks an interval whose connect attempts started past the limit after their slots', () => {
    const calm = { elu: 0.98, lagP99Ms: 20, lagMaxMs: 30 };
    expect(intervalSaturation('devices-0', { ...calm, startLagP99Ms: 50 })).toBeUndefined();
    expect(intervalSaturation('devices-0', { ...calm, startLagP99Ms: 104 })).toBe(
      'devices-0: connect attempts started 104ms after their slots at p99 (limit 50ms): the thread fell behind its own schedule',
    );
    // Both at once: one line naming both.
    expect(intervalSaturation('devices-0', { ...calm, lagP99Ms: 60, startLagP99Ms: 104 })).toMatch(
      /^devices-0: event-loop delay p99 reached 60ms \(limit 50ms\); connect attempts/,
    );
  });

  it("takes the p99 of an interval's start lags and forgets them with the interval", () => {
    const monitor = new SelfMonitor();
    for (let i = 0; i < 98; i++) monitor.started(1500);
    monitor.started(80_000);
    monitor.started(90_500);
    // 100 starts: the 99th is 80 ms late.
    expect(monitor.interval().startLagP99Ms).toBe(80);
    // 1 late of 200: p99 stays at the punctual ones' 0 ms; early (negative) counts as 0.
    for (let i = 0; i < 199; i++) monitor.started(i % 2 === 0 ? 200 : -5);
    monitor.started(5_000_000);
    expect(monitor.interval().startLagP99Ms).toBe(0);
    // Few starts: one late one (a GC pause) is not the thread falling behind; two are.
    for (let i = 0; i < 32; i++) monitor.started(1000);
    monitor.started(60_000);
    expect(monitor.interval().startLagP99Ms).toBe(1);
    for (let i = 0; i < 31; i++) monitor.started(1000);
    monitor.started(60_000);
    monitor.started(61_000);
    expect(monitor.interval().startLagP99Ms).toBe(60);
    // No attempts this interval: no figure, and the run's worst is the first interval's.
    expect(monitor.interval().startLagP99Ms).toBeUndefined();
    expect(monitor.total().startLagP99Ms).toBe(80);
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
