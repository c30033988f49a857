/**
 * The only module that knows hdr-histogram-js. Values are recorded in integer
 * microseconds; summaries are reported in milliseconds. Threads exchange
 * histograms only as compressed base64 snapshots (never per-sample messages).
 */

import type { Histogram } from 'hdr-histogram-js';
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64 } from 'hdr-histogram-js';
import { PushbenchError } from '../errors.js';

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
  /** 95 % confidence interval of each percentile (reports/percentile-ci.ts); absent in older reports. */
  ci?: Partial<Record<'p50' | 'p75' | 'p90' | 'p99' | 'p999', PercentileInterval>>;
}

/** A percentile's confidence interval, in milliseconds. */
export interface PercentileInterval {
  /** The order-statistic interval: exact for independent samples. */
  lo: number;
  hi: number;
  /** True when the sample cannot bound the percentile below (above): `lo` is the min (`hi` the max). */
  loOpen?: true;
  hiOpen?: true;
  /** Samples above the percentile's rank: how many the estimate rests on. */
  beyond: number;
  /**
   * The batch-means interval around the run's percentile: the run cut into `batches`
   * stretches of whole seconds, the percentile of each, the t interval of their mean
   * shifted onto the run's figure. It catches what the order statistics cannot: samples
   * of one run are not independent (GC pauses, drift). Absent with fewer than 3
   * stretches holding enough samples for the percentile.
   */
  batch?: { lo: number; hi: number; batches: number };
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

/**
 * Adds a snapshot into `into` (one histogram, or several: it is decoded once)
 * and returns the decoded snapshot's count.
 */
export function mergeSnapshot(
  into: LatencyHistogram | readonly LatencyHistogram[],
  snapshot: string,
): number {
  const part = decodeHistogram(snapshot);
  if (Array.isArray(into)) for (const h of into) h.add(part);
  else (into as LatencyHistogram).add(part);
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

/** One point of a percentile distribution: the value at or below which `percentile` % of samples fall. */
export interface PercentilePoint {
  /** 0..100. */
  percentile: number;
  valueUs: number;
}

/**
 * The percentile distribution of a histogram at the levels HdrHistogram's
 * percentile iterator visits: `ticksPerHalfDistance` steps between 0 and 50 %,
 * as many between 50 and 75 %, and so on, so each decade towards 100 % gets the
 * same resolution. Levels stop where the sample count cannot resolve them any
 * more (beyond 1 - 1/count every percentile is the maximum) or at
 * `maxPercentile`; the last point is always the maximum. Empty histograms give [].
 */
export function percentileDistribution(
  h: LatencyHistogram,
  ticksPerHalfDistance = 5,
  maxPercentile = 99.9999,
): PercentilePoint[] {
  if (h.totalCount === 0) return [];
  const resolvable = 100 - 100 / h.totalCount;
  const points: PercentilePoint[] = [];
  let level = 0;
  while (level < resolvable && level < maxPercentile) {
    points.push({ percentile: level, valueUs: h.getValueAtPercentile(level) });
    const halvings = Math.floor(Math.log2(100 / (100 - level)));
    level += 100 / (ticksPerHalfDistance * 2 ** (halvings + 1));
  }
  points.push({ percentile: Math.min(level, maxPercentile), valueUs: h.getValueAtPercentile(100) });
  return points;
}

/** One series' histogram for one interval: one line of an HdrHistogram interval log. */
export interface TaggedIntervalHistogram {
  /** The line's `Tag=`; no whitespace or commas (the Java reader splits on both). */
  tag: string;
  /** Interval start, ms after the log's StartTime (kept to 1 ms: the log stores seconds to 3 decimals). */
  startMs: number;
  /** Interval end, ms after the log's StartTime. */
  endMs: number;
  /** Recorded values in microseconds. */
  histogram: LatencyHistogram;
}

/** What an HdrHistogram interval log holds. */
export interface HistogramLog {
  /** The `#[StartTime]` as ms since the epoch; null when the log has none (times then count from BaseTime or the epoch). */
  startTimeMsEpoch: number | null;
  /** The interval lines in file order. */
  intervals: TaggedIntervalHistogram[];
}

/** What a log tag may be: Java's HistogramLogScanner splits fields on `[ ,\r\n]`. */
const TAG_PATTERN = /^[^\s,]+$/;

/** Java's reader treats line timestamps this far before StartTime as relative to it. */
const MS_PER_YEAR = 365 * 24 * 3600 * 1000;

/** `%.3f`, as the Java HistogramLogWriter formats timestamps and maxima. */
const fixed3 = (x: number): string => x.toFixed(3);

/**
 * Formats an HdrHistogram interval log (format version 1.3, as Java's
 * HistogramLogWriter writes it and HistogramLogProcessor reads it): the version,
 * `#[StartTime]` and `#[BaseTime]` comments (both `startTimeMsEpoch`, so line
 * timestamps are seconds after the start), a note on units, the legend, then one
 * `Tag=<tag>,<start s>,<length s>,<max ms>,<compressed histogram>` line per entry
 * in the given order. Histogram values stay in µs; Interval_Max is in ms (µs / 1000,
 * the highest value equivalent to the max, like Java's `getMaxValue()`), so Java
 * tools need `-outputValueUnitRatio 1000` to print milliseconds. Empty histograms
 * are written like any other.
 *
 * hdr-histogram-js's own HistogramLogWriter is not used: it needs the tag set on
 * the caller's histogram, follows `#[StartTime]` with a blank line, and writes the
 * raw max of a fresh histogram but the bucket's highest value of a decoded one.
 */
export function formatHistogramLog(log: {
  startTimeMsEpoch: number;
  intervals: Iterable<TaggedIntervalHistogram>;
}): string {
  const { startTimeMsEpoch } = log;
  if (!Number.isFinite(startTimeMsEpoch)) {
    throw new PushbenchError(
      'PB_USAGE',
      `histogram log start time ${startTimeMsEpoch} is not a number of ms since the epoch; pass Date.now() taken when the fleet started`,
    );
  }
  const startSec = fixed3(startTimeMsEpoch / 1000);
  const lines = [
    '#[Histogram log format version 1.3]',
    `#[StartTime: ${startSec} (seconds since epoch), ${new Date(startTimeMsEpoch).toISOString()}]`,
    `#[BaseTime: ${startSec} (seconds since epoch)]`,
    '#[pushbench: values in microseconds; Interval_Max in milliseconds; one Tag per series]',
    '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
  ];
  for (const { tag, startMs, endMs, histogram } of log.intervals) {
    if (!TAG_PATTERN.test(tag)) {
      throw new PushbenchError(
        'PB_USAGE',
        `histogram log tag ${JSON.stringify(tag)} is empty or has whitespace or commas; rename the series (HdrHistogram readers split on them)`,
      );
    }
    if (!Number.isFinite(startMs) || !Number.isFinite(endMs) || endMs < startMs) {
      throw new PushbenchError(
        'PB_USAGE',
        `interval ${startMs}..${endMs} ms of series ${tag} is not a time range; pass startMs <= endMs`,
      );
    }
    const maxUs = histogram.totalCount === 0 ? 0 : histogram.getValueAtPercentile(100);
    lines.push(
      `Tag=${tag},${fixed3(startMs / 1000)},${fixed3((endMs - startMs) / 1000)},${fixed3(maxUs / 1000)},${encodeHistogram(histogram)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The number after a `#[StartTime: ` or `#[BaseTime: ` prefix, in ms since the epoch. */
function headerTimeMs(line: string, prefix: string, source: string, lineNo: number): number {
  const seconds = Number.parseFloat(line.slice(prefix.length));
  if (!Number.isFinite(seconds)) {
    throw new PushbenchError(
      'PB_USAGE',
      `${source}:${lineNo} has no seconds-since-epoch number after ${prefix.trim()}; fix or regenerate the log`,
    );
  }
  return Math.round(seconds * 1000);
}

/**
 * Parses an HdrHistogram interval log (any 1.x log the Java tools read, tagged or
 * not; an untagged line gets the tag `''`). Line times are returned as ms after
 * the `#[StartTime]`: relative timestamps count from `#[BaseTime]` when present,
 * otherwise Java's rule applies (timestamps more than a year before StartTime are
 * relative to it, others are absolute). Throws a PushbenchError naming the line
 * on anything it cannot read, instead of stopping early as the JS reader does.
 */
export function parseHistogramLog(text: string, source = 'histogram log'): HistogramLog {
  let startTimeMsEpoch: number | null = null;
  let baseMs: number | null = null;
  const intervals: TaggedIntervalHistogram[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const lineNo = i + 1;
    if (line.startsWith('#[StartTime: ')) {
      startTimeMsEpoch = headerTimeMs(line, '#[StartTime: ', source, lineNo);
      continue;
    }
    if (line.startsWith('#[BaseTime: ')) {
      baseMs = headerTimeMs(line, '#[BaseTime: ', source, lineNo);
      continue;
    }
    if (line === '' || line.startsWith('#') || line.startsWith('"StartTimestamp"')) continue;
    const fields = line.split(',').map((f) => f.trim());
    const tag = fields[0]?.startsWith('Tag=') ? fields.shift()!.slice('Tag='.length) : '';
    const [rawStart, rawLength, , base64] = fields;
    const startSec = Number(rawStart);
    const lengthSec = Number(rawLength);
    if (
      fields.length !== 4 ||
      !Number.isFinite(startSec) ||
      !Number.isFinite(lengthSec) ||
      !base64
    ) {
      throw new PushbenchError(
        'PB_USAGE',
        `${source}:${lineNo} is not an interval line ([Tag=t,]start,length,max,histogram): ${line.slice(0, 80)}`,
      );
    }
    let histogram: LatencyHistogram;
    try {
      histogram = decodeHistogram(base64);
    } catch (err) {
      throw new PushbenchError(
        'PB_USAGE',
        `${source}:${lineNo} holds no readable compressed histogram (${(err as Error).message}); the log is corrupt, regenerate it`,
      );
    }
    const t0 = startTimeMsEpoch ?? 0;
    // Java's HistogramLogReader decides relative vs absolute once, from the first line.
    baseMs ??= Math.round(startSec * 1000) < t0 - MS_PER_YEAR ? t0 : 0;
    const startAbsMs = baseMs + Math.round(startSec * 1000);
    intervals.push({
      tag,
      startMs: startAbsMs - t0,
      endMs: startAbsMs + Math.round(lengthSec * 1000) - t0,
      histogram,
    });
  }
  return { startTimeMsEpoch, intervals };
}

/**
 * The percentile distribution of a latency histogram in milliseconds, in the
 * `.hgrm` text form of HdrHistogram's `outputPercentileDistribution` (Value,
 * Percentile, TotalCount, 1/(1-Percentile) columns, 5 ticks per half distance,
 * then the Mean/StdDeviation, Max/Total count and Buckets footer) that
 * HdrHistogram's plotter reads. An empty histogram gives the header and a
 * footer with Total count 0.
 */
export function formatPercentileDistributionMs(h: LatencyHistogram): string {
  return h.outputPercentileDistribution(5, 1000);
}

interface ValuesIterator {
  reset(): void;
  hasNext(): boolean;
  next(): { valueIteratedTo: number; countAtValueIteratedTo: number };
}

/**
 * Every distinct recorded value (µs, at the histogram's resolution) with its
 * count, lowest first, for checks that care where samples fall rather than
 * which percentile they are (e.g. connects admitted at SYN retry times).
 */
export function recordedValues(h: LatencyHistogram): Array<{ valueUs: number; count: number }> {
  const it = (h as unknown as { recordedValuesIterator?: ValuesIterator }).recordedValuesIterator;
  if (!it) throw new PushbenchError('PB_INTERNAL', 'histogram has no recorded-values iterator');
  it.reset();
  const out: Array<{ valueUs: number; count: number }> = [];
  while (it.hasNext()) {
    const v = it.next();
    out.push({ valueUs: v.valueIteratedTo, count: v.countAtValueIteratedTo });
  }
  return out;
}
