/**
 * Latency while a fault stood, beside latency just before it: the figures that
 * say whether a fault moved a series (the seed's "registration slowed, d2d
 * barely moved"). Built from the run's per-interval histograms, merged, never
 * sampled, so a window's percentiles are exact up to the histogram's precision.
 */

import type { LatencyHistogram, LatencySummary } from '../core/measure/histogram.js';
import { createLatencyHistogram } from '../core/measure/histogram.js';
import type { IntervalHistograms } from '../core/result.js';
import { summarizeWithIntervals } from './percentile-ci.js';

/** The series the before/during tables show, in this order, when a window has them. */
export const WINDOW_SERIES = ['push', 'connect', 'register', 'api', 'room', 'd2d_warm', 'd2d_cold'];

/** One stretch of the run and every latency series recorded in it. */
export interface LatencyWindow {
  /** Seconds since the fleet started, as the intervals in it cover them. */
  fromS: number;
  toS: number;
  /** Series with at least one sample in the window. */
  latency: Record<string, LatencySummary>;
}

/**
 * A lasting fault's latency: `during` covers the intervals inside the fault, and
 * `before` as long a stretch ending at the fault's start (shorter when publishing
 * began later), so the two compare like for like.
 */
export interface FaultWindows {
  before: LatencyWindow;
  during: LatencyWindow;
}

/**
 * The intervals a window takes: those whose midpoint lies in [fromS, toS). Intervals
 * are one second long, so a window's edges are good to half a second.
 */
function windowOf(
  intervals: readonly IntervalHistograms[],
  fromS: number,
  toS: number,
): LatencyWindow | null {
  const merged = new Map<string, LatencyHistogram>();
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const iv of intervals) {
    const mid = (iv.startMs + iv.endMs) / 2000;
    if (mid < fromS || mid >= toS) continue;
    first = Math.min(first, iv.startMs / 1000);
    last = Math.max(last, iv.endMs / 1000);
    for (const [series, h] of Object.entries(iv.histograms)) {
      if (h.totalCount === 0) continue;
      let into = merged.get(series);
      if (!into) {
        into = createLatencyHistogram();
        merged.set(series, into);
      }
      into.add(h);
    }
  }
  if (first === Number.POSITIVE_INFINITY) return null;
  const latency: Record<string, LatencySummary> = {};
  for (const [series, h] of merged) latency[series] = summarizeWithIntervals(h);
  return { fromS: round3(first), toS: round3(last), latency };
}

/**
 * The before and during windows of a fault that lasted (`tEnd` set), from `t` to
 * `tEnd` (seconds since the fleet started). The before window starts no earlier than
 * `notBeforeS` (publishing's start: connect-phase figures are another regime). Null
 * for an instant fault, or when either window holds no interval.
 */
export function faultWindows(
  fault: { t: number; tEnd: number | null },
  intervals: readonly IntervalHistograms[],
  notBeforeS: number,
): FaultWindows | null {
  if (fault.tEnd === null || fault.tEnd <= fault.t) return null;
  const length = fault.tEnd - fault.t;
  const during = windowOf(intervals, fault.t, fault.tEnd);
  const before = windowOf(intervals, Math.max(notBeforeS, fault.t - length), fault.t);
  return during && before ? { before, during } : null;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
