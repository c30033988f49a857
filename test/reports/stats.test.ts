import { describe, expect, it } from 'vitest';
import {
  clopperPearsonLower,
  clopperPearsonUpper,
  logGamma,
  regularizedIncompleteBeta,
  requiredTrials,
} from '../../reports/stats.js';

/**
 * P(X <= k) for X ~ Bin(n, p), summed term by term in log space: an independent check
 * that shares no code with the incomplete-beta implementation.
 */
function binomialCdf(k: number, n: number, p: number): number {
  let logTerm = n * Math.log1p(-p); // i = 0
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += Math.exp(logTerm);
    logTerm += Math.log(n - i) - Math.log(i + 1) + Math.log(p) - Math.log1p(-p);
  }
  return sum;
}

describe('requiredTrials', () => {
  it('matches the five-nines table in the brief for 0..3 losses', () => {
    expect(requiredTrials(0, 1e-5)).toBe(299_572);
    expect(requiredTrials(1, 1e-5)).toBe(474_385);
    expect(requiredTrials(2, 1e-5)).toBe(629_578);
    expect(requiredTrials(3, 1e-5)).toBe(775_364);
  });

  it('returns the smallest n: one fewer trial does not clear the rate', () => {
    for (const k of [0, 1, 2, 3, 10]) {
      const n = requiredTrials(k, 1e-4);
      expect(clopperPearsonUpper(k, n)).toBeLessThanOrEqual(1e-4);
      expect(clopperPearsonUpper(k, n - 1)).toBeGreaterThan(1e-4);
    }
  });

  it('agrees with the closed form for zero failures', () => {
    // n >= ln(1 - confidence) / ln(1 - rate)
    for (const [rate, confidence] of [
      [1e-3, 0.95],
      [1e-5, 0.99],
      [0.05, 0.9],
    ] as const) {
      const expected = Math.ceil(Math.log(1 - confidence) / Math.log1p(-rate));
      expect(requiredTrials(0, rate, confidence)).toBe(expected);
    }
  });

  it('grows with the number of failures and with the confidence asked for', () => {
    const byFailures = [0, 1, 5, 20, 100].map((k) => requiredTrials(k, 1e-3));
    for (let i = 1; i < byFailures.length; i++) {
      expect(byFailures[i]).toBeGreaterThan(byFailures[i - 1] ?? Number.POSITIVE_INFINITY);
    }
    expect(requiredTrials(2, 1e-3, 0.99)).toBeGreaterThan(requiredTrials(2, 1e-3, 0.95));
  });

  it('handles the edges: a rate of 0 is unreachable, a rate of 1 needs nothing more', () => {
    expect(requiredTrials(0, 0)).toBe(Number.POSITIVE_INFINITY);
    expect(requiredTrials(4, 1)).toBe(4);
  });
});

describe('clopperPearsonUpper', () => {
  it('equals 1 - (1 - confidence)^(1/n) with no failures', () => {
    for (const n of [1, 10, 299_572, 1e9]) {
      expect(clopperPearsonUpper(0, n)).toBeCloseTo(1 - 0.05 ** (1 / n), 15);
      expect(clopperPearsonUpper(0, n, 0.99)).toBeCloseTo(1 - 0.01 ** (1 / n), 15);
    }
  });

  it('gives 0.10225 for 5 failures in 100 trials (one-sided 95%)', () => {
    const p = clopperPearsonUpper(5, 100);
    // Reference value from scipy.stats.beta.ppf(0.95, 6, 95) = 0.1022533776432745.
    expect(p).toBeCloseTo(0.1022533776432745, 12);
    expect(binomialCdf(5, 100, p)).toBeCloseTo(0.05, 12);
  });

  it('solves P(X <= k; n, p) = 1 - confidence across sizes', () => {
    for (const [k, n, confidence] of [
      [1, 3, 0.95],
      [3, 775_364, 0.95],
      [10, 1000, 0.99],
      [50, 1000, 0.95],
      [7, 1e9, 0.95],
      [200, 1e6, 0.9],
    ] as const) {
      const p = clopperPearsonUpper(k, n, confidence);
      expect(binomialCdf(k, n, p) / (1 - confidence)).toBeCloseTo(1, 9);
    }
  });

  it('stays finite and ordered for n near 1e9 with any number of failures', () => {
    for (const k of [1, 1000, 5e8, 1e9 - 10]) {
      const upper = clopperPearsonUpper(k, 1e9);
      const lower = clopperPearsonLower(k, 1e9);
      expect(Number.isFinite(upper)).toBe(true);
      expect(lower).toBeLessThan(k / 1e9);
      expect(upper).toBeGreaterThan(k / 1e9);
      expect(upper).toBeLessThan(1);
    }
    // Half the trials failing: the bound sits 1.645 standard errors above 0.5.
    expect(clopperPearsonUpper(5e8, 1e9)).toBeCloseTo(0.5 + 1.6449 * Math.sqrt(0.25 / 1e9), 7);
  });

  it('falls as trials grow and rises as failures grow', () => {
    for (const n of [10, 1000, 1e6]) {
      for (const k of [0, 1, Math.floor(n / 3), n - 1]) {
        const p = clopperPearsonUpper(k, n);
        expect(clopperPearsonUpper(k, n + 1)).toBeLessThan(p);
        expect(clopperPearsonUpper(k + 1, n)).toBeGreaterThan(p);
        expect(clopperPearsonUpper(k, n, 0.99)).toBeGreaterThan(p);
      }
    }
  });

  it('is 1 with no trials or when every trial failed', () => {
    expect(clopperPearsonUpper(0, 0)).toBe(1);
    expect(clopperPearsonUpper(7, 7)).toBe(1);
    expect(clopperPearsonUpper(9, 7)).toBe(1);
  });

  it('rejects negative counts and a confidence outside (0, 1)', () => {
    expect(() => clopperPearsonUpper(-1, 10)).toThrow(RangeError);
    expect(() => clopperPearsonUpper(1, 10, 1)).toThrow(RangeError);
  });
});

describe('clopperPearsonLower', () => {
  it('mirrors the upper bound: lower(k, n) = 1 - upper(n - k, n)', () => {
    for (const [k, n] of [
      [1, 10],
      [5, 100],
      [3, 775_364],
      [400, 1000],
    ] as const) {
      expect(clopperPearsonLower(k, n)).toBeCloseTo(1 - clopperPearsonUpper(n - k, n), 12);
    }
  });

  it('solves P(X >= k; n, p) = 1 - confidence', () => {
    const p = clopperPearsonLower(5, 100);
    expect(1 - binomialCdf(4, 100, p)).toBeCloseTo(0.05, 12);
  });

  it('is 0 with no failures and (1 - confidence)^(1/n) when all failed', () => {
    expect(clopperPearsonLower(0, 100)).toBe(0);
    expect(clopperPearsonLower(20, 20)).toBeCloseTo(0.05 ** (1 / 20), 15);
  });
});

describe('incomplete beta and log-gamma', () => {
  it('logGamma matches factorials', () => {
    expect(logGamma(1)).toBeCloseTo(0, 14);
    expect(logGamma(11)).toBeCloseTo(Math.log(3_628_800), 12);
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 14);
  });

  it('I_x(a, b) matches closed forms and its symmetry', () => {
    // I_x(2, 3) = P(Bin(4, x) >= 2) = 1 - (1-x)^3 (1 + 3x), which is 11/16 at x = 0.5.
    expect(regularizedIncompleteBeta(0.5, 2, 3)).toBeCloseTo(11 / 16, 14);
    expect(regularizedIncompleteBeta(0.3, 1, 1)).toBeCloseTo(0.3, 14);
    const x = 0.37;
    expect(regularizedIncompleteBeta(x, 4.5, 7)).toBeCloseTo(
      1 - regularizedIncompleteBeta(1 - x, 7, 4.5),
      14,
    );
    expect(regularizedIncompleteBeta(0, 2, 3)).toBe(0);
    expect(regularizedIncompleteBeta(1, 2, 3)).toBe(1);
  });
});
