/**
 * Distribution-free confidence intervals for percentiles, from order statistics.
 *
 * Of n samples, the number B at or below the true q-quantile ξ is Binomial(n, q).
 * The k-th smallest sample X_(k) is at or below ξ exactly when B >= k, so
 *
 *   P(X_(l) <= ξ <= X_(u)) >= P(l <= B <= u - 1) = F(u - 1) - F(l - 1),
 *
 * F the binomial CDF. Take l the largest rank with F(l - 1) <= α/2 and u the smallest
 * with F(u - 1) >= 1 - α/2: the interval [X_(l), X_(u)] covers ξ with probability at
 * least 1 - α whatever the distribution. The ranks are mapped to values through the
 * run's histogram, so the bounds carry its precision (3 significant digits). When no
 * rank is low (high) enough the interval is open on that side: the sample cannot bound
 * the quantile there, and the bound shown is the sample's min (max).
 * docs/statistics.md works an example.
 */

import type {
  LatencyHistogram,
  LatencySummary,
  PercentileInterval,
} from '../core/measure/histogram.js';
import { createLatencyHistogram, recordedValues, summarize } from '../core/measure/histogram.js';
import { formatMs } from '../core/units.js';
import { binomialCdf } from './stats.js';

/** The percentiles a summary carries intervals for, as (name, q). */
export const INTERVAL_STATS = [
  ['p50', 0.5],
  ['p75', 0.75],
  ['p90', 0.9],
  ['p99', 0.99],
  ['p999', 0.999],
] as const;

/** A percentile's name in {@link INTERVAL_STATS}. */
export type IntervalStat = (typeof INTERVAL_STATS)[number][0];

export type { PercentileInterval };

/**
 * The interval a percentile is judged and shown by: the hull of the order-statistic
 * interval and, when there is one, the batch-means interval; an open side stays open.
 */
export function intervalBounds(i: PercentileInterval): { lo: number | null; hi: number | null } {
  const lo = i.loOpen ? null : Math.min(i.lo, i.batch?.lo ?? i.lo);
  const hi = i.hiOpen ? null : Math.max(i.hi, i.batch?.hi ?? i.hi);
  return { lo, hi };
}

/** `lo-hi` of a percentile's 95 % interval ({@link intervalBounds}); `..` on a side the sample cannot bound. */
export function formatInterval(i: PercentileInterval | undefined): string {
  if (!i) return '-';
  const { lo, hi } = intervalBounds(i);
  return `${lo === null ? '..' : formatMs(lo)}-${hi === null ? '..' : formatMs(hi)}`;
}

/** The intervals of these percentiles of a series, formatted; null when it has none. */
export function formatIntervals(
  s: LatencySummary,
  stats: readonly IntervalStat[],
): string[] | null {
  const ci = s.ci;
  if (!ci || s.count === 0) return null;
  return stats.map((stat) => formatInterval(ci[stat]));
}

/** Student's t at 97.5 % for 2..9 degrees of freedom (the batch counts used). */
const T975: Readonly<Record<number, number>> = {
  2: 4.303,
  3: 3.182,
  4: 2.776,
  5: 2.571,
  6: 2.447,
  7: 2.365,
  8: 2.306,
  9: 2.262,
};

/** Most stretches a run is cut into for batch means. */
const MAX_BATCHES = 10;

/**
 * Widens each percentile's interval with batch means over the run's per-second
 * histograms of the same series (see {@link PercentileInterval.batch}). A stretch counts
 * for a percentile q when it holds at least 5 / (1 - q) samples (10 for p50, 5,000 for
 * p99.9); with fewer than 3 such stretches that percentile keeps its order-statistic
 * interval only.
 */
export function withBatchIntervals(
  s: LatencySummary,
  perSecond: readonly LatencyHistogram[],
): LatencySummary {
  if (!s.ci || s.count === 0 || perSecond.length < 3) return s;
  const k = Math.min(MAX_BATCHES, perSecond.length);
  const batches: LatencyHistogram[] = [];
  for (let b = 0; b < k; b++) {
    const from = Math.floor((b * perSecond.length) / k);
    const to = Math.floor(((b + 1) * perSecond.length) / k);
    const h = createLatencyHistogram();
    for (let i = from; i < to; i++) h.add(perSecond[i]!);
    batches.push(h);
  }
  const ci = { ...s.ci };
  for (const [stat, q] of INTERVAL_STATS) {
    const own = ci[stat];
    if (!own) continue;
    const values = batches
      .filter((h) => h.totalCount >= 5 / (1 - q))
      .map((h) => h.getValueAtPercentile(q * 100) / 1000);
    if (values.length < 3) continue;
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1));
    const half = (T975[values.length - 1] ?? 2.262) * (sd / Math.sqrt(values.length));
    const at = s[stat];
    ci[stat] = {
      ...own,
      batch: {
        lo: Math.round(Math.max(0, at - half) * 1000) / 1000,
        hi: Math.round((at + half) * 1000) / 1000,
        batches: values.length,
      },
    };
  }
  return { ...s, ci };
}

/** The summary of `h` with the 95 % interval of each percentile. */
export function summarizeWithIntervals(h: LatencyHistogram): LatencySummary {
  const s = summarize(h);
  return s.count > 0 ? { ...s, ci: percentileIntervals(h) } : s;
}

/** The 1-based ranks [l, u] of the order statistics bounding the q-quantile of n samples; 0 or n + 1 when open. */
export function quantileRanks(n: number, q: number, confidence = 0.95): [number, number] {
  if (!(n >= 1) || !Number.isInteger(n))
    throw new RangeError(`quantileRanks: n must be >= 1, got ${n}`);
  if (!(q > 0 && q < 1)) throw new RangeError(`quantileRanks: q must be in (0, 1), got ${q}`);
  const tail = (1 - confidence) / 2;
  // Largest l in [1, n] with F(l - 1) <= tail; 0 when even F(0) is above it.
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (binomialCdf(mid - 1, n, q) <= tail) lo = mid;
    else hi = mid - 1;
  }
  const l = lo;
  // Smallest u in [1, n] with F(u - 1) >= 1 - tail; n + 1 when even F(n - 1) is below it.
  let a = Math.max(1, l);
  let b = n + 1;
  while (a < b) {
    const mid = Math.floor((a + b) / 2);
    if (binomialCdf(mid - 1, n, q) >= 1 - tail) b = mid;
    else a = mid + 1;
  }
  return [l, a];
}

/** The confidence interval of each percentile of {@link INTERVAL_STATS} of `h` (µs in, ms out). */
export function percentileIntervals(
  h: LatencyHistogram,
  confidence = 0.95,
): Partial<Record<IntervalStat, PercentileInterval>> {
  const n = h.totalCount;
  if (n === 0) return {};
  const plans = INTERVAL_STATS.map(([stat, q]) => {
    const [l, u] = quantileRanks(n, q, confidence);
    return { stat, q, l, u };
  });
  const wanted = [...new Set(plans.flatMap((p) => [Math.max(1, p.l), Math.min(n, p.u)]))].sort(
    (a, b) => a - b,
  );
  // One walk over the recorded values gives every order statistic asked for.
  const at = new Map<number, number>();
  let seen = 0;
  let w = 0;
  for (const { valueUs, count } of recordedValues(h)) {
    seen += count;
    while (w < wanted.length && wanted[w]! <= seen) at.set(wanted[w++]!, valueUs);
    if (w === wanted.length) break;
  }
  const ms = (us: number | undefined) => Math.round(us ?? 0) / 1000;
  const out: Partial<Record<IntervalStat, PercentileInterval>> = {};
  for (const { stat, q, l, u } of plans) {
    out[stat] = {
      lo: ms(at.get(Math.max(1, l))),
      hi: ms(at.get(Math.min(n, u))),
      ...(l < 1 && { loOpen: true as const }),
      ...(u > n && { hiOpen: true as const }),
      beyond: n - Math.ceil(q * n),
    };
  }
  return out;
}
