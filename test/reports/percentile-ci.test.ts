/**
 * Order-statistic intervals for percentiles: the ranks against textbook values, the
 * open ends when a sample is too small, coverage checked by simulation on uniform and
 * exponential samples, and the mapping through a real histogram.
 */
import { describe, expect, it } from 'vitest';
import { createLatencyHistogram, recordUs } from '../../core/measure/histogram.js';
import { Rng } from '../../core/rng.js';
import {
  intervalBounds,
  percentileIntervals,
  quantileRanks,
  summarizeWithIntervals,
  withBatchIntervals,
} from '../../reports/percentile-ci.js';
import { binomialCdf, fisherExact } from '../../reports/stats.js';

describe('quantileRanks', () => {
  it('gives the textbook ranks of a median interval', () => {
    // n = 20: [X(6), X(15)], coverage 0.9586; n = 100: [X(40), X(61)], coverage 0.9648.
    expect(quantileRanks(20, 0.5)).toEqual([6, 15]);
    expect(quantileRanks(100, 0.5)).toEqual([40, 61]);
    const [l, u] = quantileRanks(100, 0.5);
    expect(binomialCdf(u - 1, 100, 0.5) - binomialCdf(l - 1, 100, 0.5)).toBeCloseTo(0.9648, 3);
  });

  it('is open where the sample cannot bound the percentile', () => {
    // 20 samples say nothing above their max about a p99.9, nor below their min about a p0.1.
    expect(quantileRanks(20, 0.999)[1]).toBe(21);
    expect(quantileRanks(20, 0.001)[0]).toBe(0);
    // 20,000 samples bound a p99.9 on both sides: it rests on the top 20.
    const [l, u] = quantileRanks(20_000, 0.999);
    expect(l).toBeGreaterThan(19_970);
    expect(u).toBeLessThan(20_000);
  });

  it('refuses what it cannot mean', () => {
    expect(() => quantileRanks(0, 0.5)).toThrow(RangeError);
    expect(() => quantileRanks(10, 1)).toThrow(RangeError);
  });
});

describe('coverage by simulation', () => {
  // 400 trials: the standard error of a coverage near 0.95 is 0.011; allow three of them.
  const TRIALS = 400;
  const TOLERANCE = 0.033;
  const cases = [
    { name: 'uniform(0, 1)', draw: (r: Rng) => r.next(), quantile: (q: number) => q },
    {
      name: 'exponential(1)',
      draw: (r: Rng) => -Math.log(1 - r.next()),
      quantile: (q: number) => -Math.log(1 - q),
    },
  ];
  for (const { name, draw, quantile } of cases) {
    for (const [n, q] of [
      [200, 0.5],
      [200, 0.9],
      [2000, 0.99],
      [5000, 0.999],
    ] as const) {
      it(`${name}: p${q * 100} of ${n} samples is covered at least 95 % of the time`, () => {
        const rng = new Rng(n * 1000 + Math.round(q * 1000));
        const [l, u] = quantileRanks(n, q);
        const xi = quantile(q);
        let covered = 0;
        const sample = new Float64Array(n);
        for (let t = 0; t < TRIALS; t++) {
          for (let i = 0; i < n; i++) sample[i] = draw(rng);
          sample.sort();
          if (sample[l - 1]! <= xi && xi <= sample[u - 1]!) covered++;
        }
        expect(covered / TRIALS).toBeGreaterThanOrEqual(0.95 - TOLERANCE);
        // Not a trivially wide interval either: exact ranks keep coverage below ~99 %.
        expect(covered / TRIALS).toBeLessThanOrEqual(0.995);
      });
    }
  }
});

describe('percentileIntervals', () => {
  it('maps the ranks through the histogram: 1..10,000 ms recorded once each', () => {
    const h = createLatencyHistogram();
    for (let ms = 1; ms <= 10_000; ms++) recordUs(h, ms * 1000);
    const ci = percentileIntervals(h);
    const [l, u] = quantileRanks(10_000, 0.99);
    // The k-th smallest is k ms, to the histogram's 3 significant digits (0.1 %).
    expect(Math.abs(ci.p99!.lo - l) / l).toBeLessThan(0.001);
    expect(Math.abs(ci.p99!.hi - u) / u).toBeLessThan(0.001);
    expect(ci.p99!.lo).toBeLessThanOrEqual(9900);
    expect(ci.p99!.hi).toBeGreaterThanOrEqual(9900);
    expect(ci.p99?.beyond).toBe(100);
    expect(ci.p999?.beyond).toBe(10);
    expect(ci.p50?.loOpen).toBeUndefined();
  });

  it('shows a p99.9 of 20 samples for what it is: open above, resting on none', () => {
    const h = createLatencyHistogram();
    for (let i = 1; i <= 20; i++) recordUs(h, i * 1000);
    const ci = percentileIntervals(h);
    expect(ci.p999?.hiOpen).toBe(true);
    expect(ci.p999?.hi).toBeCloseTo(20, 1);
    expect(ci.p999?.beyond).toBe(0);
    expect(percentileIntervals(createLatencyHistogram())).toEqual({});
  });
});

describe('fisherExact', () => {
  it('matches known p-values and says nothing differs when nothing does', () => {
    // The tea-tasting table [[3, 1], [1, 3]]: two-sided p = 0.4857.
    expect(fisherExact(3, 4, 1, 4)).toBeCloseTo(0.4857, 4);
    // 0 of 10,000 against 10 of 10,000 lost: p = 0.00195 (a real difference).
    expect(fisherExact(0, 10_000, 10, 10_000)).toBeCloseTo(0.00195, 4);
    expect(fisherExact(5, 100_000, 5, 100_000)).toBeCloseTo(1, 6);
    expect(fisherExact(0, 0, 0, 0)).toBe(1);
    expect(() => fisherExact(3, 2, 0, 1)).toThrow(RangeError);
  });
});

describe('withBatchIntervals', () => {
  /** `seconds` per-second histograms of 1,000 samples each, around `msAt(t)`. */
  function seconds(n: number, msAt: (t: number) => number) {
    const rng = new Rng(7);
    return Array.from({ length: n }, (_, t) => {
      const h = createLatencyHistogram();
      for (let i = 0; i < 1000; i++) recordUs(h, (msAt(t) + rng.next()) * 1000);
      return h;
    });
  }
  const merged = (hs: ReturnType<typeof seconds>) => {
    const all = createLatencyHistogram();
    for (const h of hs) all.add(h);
    return all;
  };

  it('widens a percentile that moves from second to second, which order statistics cannot see', () => {
    // Alternate seconds at 1-2 ms and 5-6 ms: 10,000 samples, a tight order-statistic p50
    // interval, but the run-level figure is only as steady as its seconds.
    const hs = seconds(10, (t) => (t % 3 === 0 ? 5 : 1));
    const s = withBatchIntervals(summarizeWithIntervals(merged(hs)), hs);
    const p50 = s.ci!.p50!;
    expect(p50.batch?.batches).toBe(10);
    expect(p50.batch!.hi - p50.batch!.lo).toBeGreaterThan(5 * (p50.hi - p50.lo));
    const { lo, hi } = intervalBounds(p50);
    expect(lo).toBe(Math.min(p50.lo, p50.batch!.lo));
    expect(hi).toBe(Math.max(p50.hi, p50.batch!.hi));
    // p99.9 needs 5,000 samples per stretch: none of these has them.
    expect(s.ci!.p999!.batch).toBeUndefined();
  });

  it('leaves a steady run about as it was', () => {
    const hs = seconds(10, () => 2);
    const s = withBatchIntervals(summarizeWithIntervals(merged(hs)), hs);
    const p50 = s.ci!.p50!;
    expect(p50.batch!.hi - p50.batch!.lo).toBeLessThan(0.2);
    expect(
      withBatchIntervals(summarizeWithIntervals(merged(hs)), hs.slice(0, 2)).ci!.p50!.batch,
    ).toBeUndefined();
  });
});
