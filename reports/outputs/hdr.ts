/**
 * HdrHistogram files: the `latency.hlog` interval log (every series of every
 * report interval, one tagged line each) and one `.hgrm` percentile distribution
 * per series. Both are the formats HdrHistogram's own tools read, so a run can be
 * inspected with `HistogramLogProcessor` or the HdrHistogram plotter, and
 * `pushbench report DIR` can rebuild the charts from the log without rerunning.
 */

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PushbenchError } from '../../core/errors.js';
import {
  createLatencyHistogram,
  formatHistogramLog,
  formatPercentileDistributionMs,
  type LatencyHistogram,
  parseHistogramLog,
  type TaggedIntervalHistogram,
} from '../../core/measure/histogram.js';
import type { IntervalHistograms } from '../../core/result.js';

/** The interval log's file name inside a results folder. */
export const HDR_LOG_FILE = 'latency.hlog';

/** Series names become file names (`<series>.hgrm`) and log tags, so they keep to this. */
// '@' separates a series from its region (`push@eu`); it is safe in file names and log tags.
const SERIES_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._@-]*$/;

/** What {@link readHdrLog} found in an interval log. */
export interface HdrLogContents {
  /** The log's StartTime (the fleet start) in ms since the epoch; null when the file has none. */
  startTimeMsEpoch: number | null;
  /**
   * One entry per distinct interval, in time order; each holds every series
   * logged for it (tag minus the prefix). Times are ms after StartTime, to 1 ms.
   */
  intervals: IntervalHistograms[];
}

async function writeFileIn(path: string, text: string): Promise<void> {
  await mkdir(dirname(resolve(path)), { recursive: true });
  await writeFile(path, text);
}

function* taggedLines(
  intervals: readonly IntervalHistograms[],
  tagPrefix: string,
): Generator<TaggedIntervalHistogram> {
  for (const { startMs, endMs, histograms } of intervals) {
    for (const [series, histogram] of Object.entries(histograms)) {
      yield { tag: `${tagPrefix}${series}`, startMs, endMs, histogram };
    }
  }
}

/**
 * Writes an HdrHistogram interval log (format 1.3) to `path`: one line per
 * interval per series, in interval order and then the series' key order, tagged
 * `Tag=<tagPrefix><series>` (the prefix is prepended verbatim, e.g. `run-a.`).
 * StartTime and BaseTime are `startTimeMsEpoch` (the fleet start), so a line's
 * StartTimestamp is the interval's `startMs` in seconds. Histogram values are
 * microseconds and Interval_Max is milliseconds; Java's HistogramLogProcessor
 * needs `-outputValueUnitRatio 1000` to print ms. Empty histograms (count 0) are
 * written too: every tag then has a line for every interval, so a gap in the
 * traffic shows as an interval with count 0 instead of a missing one, and both
 * the Java and JS readers accept them.
 */
export async function writeHdrLog(
  path: string,
  intervals: readonly IntervalHistograms[],
  opts: { startTimeMsEpoch: number; tagPrefix?: string },
): Promise<void> {
  const text = formatHistogramLog({
    startTimeMsEpoch: opts.startTimeMsEpoch,
    intervals: taggedLines(intervals, opts.tagPrefix ?? ''),
  });
  await writeFileIn(path, text);
}

/**
 * Reads an HdrHistogram interval log back into intervals: lines with the same
 * start and end become one interval, keyed by tag. With `tagPrefix`, only lines
 * whose tag starts with it are kept and the prefix is removed (the inverse of
 * {@link writeHdrLog}'s option); untagged lines are series `''`. Two lines with
 * the same tag and interval are added together. Throws a PushbenchError naming
 * the line when the file is not a readable log.
 */
export async function readHdrLog(
  path: string,
  opts: { tagPrefix?: string } = {},
): Promise<HdrLogContents> {
  const prefix = opts.tagPrefix ?? '';
  const log = parseHistogramLog(await readFile(path, 'utf8'), path);
  const byRange = new Map<string, IntervalHistograms>();
  for (const { tag, startMs, endMs, histogram } of log.intervals) {
    if (!tag.startsWith(prefix)) continue;
    const series = tag.slice(prefix.length);
    const key = `${startMs}/${endMs}`;
    let interval = byRange.get(key);
    if (!interval) {
      interval = { startMs, endMs, histograms: {} };
      byRange.set(key, interval);
    }
    const existing = interval.histograms[series];
    if (existing) {
      existing.add(histogram);
    } else {
      // Decoded histograms cannot grow; copy into one that can, like every other.
      const copy = createLatencyHistogram();
      copy.add(histogram);
      interval.histograms[series] = copy;
    }
  }
  const intervals = [...byRange.values()].sort(
    (a, b) => a.startMs - b.startMs || a.endMs - b.endMs,
  );
  return { startTimeMsEpoch: log.startTimeMsEpoch, intervals };
}

/**
 * Writes a histogram's percentile distribution to `path` as `.hgrm` text in
 * milliseconds (values are µs, divided by 1000), the form HdrHistogram's plotter
 * reads. An empty histogram gives a file with only the header and footer.
 */
export async function writeHgrm(path: string, histogram: LatencyHistogram): Promise<void> {
  await writeFileIn(path, formatPercentileDistributionMs(histogram));
}

/**
 * Writes a run's HdrHistogram files into `dir` and returns their paths:
 * `latency.hlog` (all intervals, tags are series names; skipped when `writeLog`
 * is false, as when a report is rebuilt without its intervals and an existing
 * log must be left alone) and `<series>.hgrm` for each total with samples.
 * Series names must match `[A-Za-z0-9_-][A-Za-z0-9._-]*` (they become file
 * names and tags); anything else throws before a file is written.
 */
export async function writeHdrOutputs(
  dir: string,
  input: {
    intervals: readonly IntervalHistograms[];
    totals: Record<string, LatencyHistogram>;
    startTimeMsEpoch: number;
    /** Whether to write `latency.hlog`. Default true. */
    writeLog?: boolean;
  },
): Promise<string[]> {
  const names = new Set(Object.keys(input.totals));
  for (const interval of input.intervals) {
    for (const series of Object.keys(interval.histograms)) names.add(series);
  }
  const bad = [...names].filter((s) => !SERIES_PATTERN.test(s));
  if (bad.length > 0) {
    throw new PushbenchError(
      'PB_USAGE',
      `latency series ${bad.map((s) => JSON.stringify(s)).join(', ')} cannot name HdrHistogram files; use letters, digits, '.', '_', '@' and '-' only`,
      bad,
    );
  }
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  if (input.writeLog ?? true) {
    const path = join(dir, HDR_LOG_FILE);
    await writeHdrLog(path, input.intervals, { startTimeMsEpoch: input.startTimeMsEpoch });
    written.push(path);
  }
  for (const [series, histogram] of Object.entries(input.totals)) {
    if (histogram.totalCount === 0) continue;
    const path = join(dir, `${series}.hgrm`);
    await writeHgrm(path, histogram);
    written.push(path);
  }
  return written;
}
