/**
 * The only module that knows hdr-histogram-js. Values are recorded in integer
 * microseconds; summaries are reported in milliseconds. Threads exchange
 * histograms only as compressed base64 snapshots (never per-sample messages).
 */

import type { Histogram } from 'hdr-histogram-js';
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64 } from 'hdr-histogram-js';

/** A latency histogram in microseconds. */
export type LatencyHistogram = Histogram;

/** Percentiles of one latency series, in milliseconds. */
export interface LatencySummary {
  unit: 'ms';
  count: number;
  min: number;
  mean: number;
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** A new, empty latency histogram (1 µs resolution, 3 significant digits, auto-resizing). */
export function createLatencyHistogram(): LatencyHistogram {
  return build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });
}

/** Records one latency in microseconds; negative values (clock granularity) count as 0. */
export function recordUs(h: LatencyHistogram, valueUs: number): void {
  h.recordValue(valueUs > 0 ? Math.round(valueUs) : 0);
}

/** Encodes a histogram as a compressed base64 snapshot (the HdrHistogram V2 format). */
export function encodeHistogram(h: LatencyHistogram): string {
  return encodeIntoCompressedBase64(h);
}

/** Decodes a snapshot made by {@link encodeHistogram}. */
export function decodeHistogram(snapshot: string): LatencyHistogram {
  return decodeFromCompressedBase64(snapshot);
}

/** Adds a snapshot into `into` and returns the decoded snapshot's count. */
export function mergeSnapshot(into: LatencyHistogram, snapshot: string): number {
  const part = decodeHistogram(snapshot);
  into.add(part);
  return part.totalCount;
}

const usToMs = (us: number): number => Math.round(us) / 1000;

/** The percentiles of a histogram in milliseconds. An empty histogram gives zeros and count 0. */
export function summarize(h: LatencyHistogram): LatencySummary {
  if (h.totalCount === 0) {
    return {
      unit: 'ms',
      count: 0,
      min: 0,
      mean: 0,
      p50: 0,
      p75: 0,
      p90: 0,
      p99: 0,
      p999: 0,
      max: 0,
    };
  }
  return {
    unit: 'ms',
    count: h.totalCount,
    min: usToMs(h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.minNonZeroValue),
    mean: usToMs(h.mean),
    p50: usToMs(h.getValueAtPercentile(50)),
    p75: usToMs(h.getValueAtPercentile(75)),
    p90: usToMs(h.getValueAtPercentile(90)),
    p99: usToMs(h.getValueAtPercentile(99)),
    p999: usToMs(h.getValueAtPercentile(99.9)),
    // The percentile form (highest equivalent value) survives encoding; maxValue does not.
    max: usToMs(h.getValueAtPercentile(100)),
  };
}
