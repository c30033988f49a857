/**
 * The fold merges interval reports by the second they were stamped in, on the
 * coordinator's clock: one that arrives after its second was closed (an agent
 * across a slow link) lands in that second, never in a later one, and never
 * goes missing from the run's totals.
 */
import { describe, expect, it } from 'vitest';
import { monoNowUs } from '../../core/clock.js';
import { createLatencyHistogram, encodeHistogram, recordUs } from '../../core/measure/histogram.js';
import type { DeviceInterval } from '../../loadgen/messages.js';
import { noConnectionEvents, RunFold } from '../../loadgen/run-fold.js';

function report(atUs: number, pushUs: number[]): DeviceInterval {
  const push = createLatencyHistogram();
  for (const us of pushUs) recordUs(push, us);
  return {
    type: 'device-interval',
    workerIndex: 0,
    atUs,
    open: 1,
    established: 1,
    connectsOk: 0,
    received: pushUs.length,
    trafficCounters: {},
    histograms: { push: encodeHistogram(push) },
    self: { elu: 0.1, lagP99Ms: 1, lagMaxMs: 1 },
    ...noConnectionEvents(),
  };
}

describe('interval reports that arrive late', () => {
  it('are merged into the second they were stamped in, and counted in the run', () => {
    const fold = new RunFold();
    const startUs = monoNowUs() - 5_000_000;
    fold.begin(startUs);
    // Second 1, on time.
    fold.apply('shard 0', report(startUs + 1_000_000, [1000, 2000]));
    fold.flush('publishing');
    // Second 1 again, from an agent whose report arrived after the flush.
    fold.apply('shard 1 (agent far)', report(startUs + 1_000_000, [3000, 4000, 5000]));
    // Second 2, on time: stamped after the first flush.
    fold.apply('shard 0', report(monoNowUs() + 1, [6000]));
    fold.flush('publishing');

    expect(fold.lateReports).toBe(1);
    expect(fold.intervals.map((iv) => iv.histograms.push?.totalCount)).toEqual([5, 1]);
    expect(fold.histograms.push?.totalCount).toBe(6);
    // The late samples are the first second's: its max is 5 ms, the second's 6 ms alone.
    expect(fold.intervals[0]?.histograms.push?.maxValue).toBeGreaterThanOrEqual(4990);
    expect(fold.intervals[1]?.histograms.push?.minNonZeroValue).toBeGreaterThanOrEqual(5990);
  });
});

describe("the generator's validity share", () => {
  it('counts the judged series, not connect_failed (a diagnostic of the failure path)', () => {
    const fold = new RunFold();
    const startUs = monoNowUs() - 5_000_000;
    fold.begin(startUs);
    const calm = report(
      startUs + 1_000_000,
      Array.from({ length: 199 }, () => 1000),
    );
    const lagging = report(startUs + 1_000_000, [1000]);
    const failed = createLatencyHistogram();
    for (let i = 0; i < 1000; i++) recordUs(failed, 150_000);
    lagging.histograms.connect_failed = encodeHistogram(failed);
    lagging.self = { elu: 0.3, lagP99Ms: 120, lagMaxMs: 130 };
    fold.apply('shard 0', calm);
    fold.apply('shard 1', lagging);
    fold.flush('publishing');
    // 1 of 200 judged samples lagged (0.5 %): a warning, not INVALID; counting the
    // 1,000 failed attempts would have made it 1,001 of 1,200.
    const lag = fold.lag();
    expect(lag.reasons).toEqual([]);
    expect(lag.warnings.at(-1)).toMatch(/held 0\.50% of latency samples \(1 of 200;/);
    expect(fold.histograms.connect_failed?.totalCount).toBe(1000);
  });
});
