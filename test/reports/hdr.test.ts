import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Histogram } from 'hdr-histogram-js';
import { HistogramLogReader, listTags } from 'hdr-histogram-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLatencyHistogram,
  type LatencyHistogram,
  recordUs,
} from '../../core/measure/histogram.js';
import type { IntervalHistograms } from '../../core/result.js';
import { readHdrLog, writeHdrLog, writeHdrOutputs, writeHgrm } from '../../reports/outputs/hdr.js';

const START_MS_EPOCH = 1_700_000_000_123;
const SERIES = ['push', 'connect', 'api'] as const;
type Series = (typeof SERIES)[number];

/** Samples per interval per series; api's middle interval is empty on purpose. */
const COUNTS: Record<Series, readonly number[]> = {
  push: [500, 800, 300],
  connect: [20, 5, 40],
  api: [30, 0, 10],
};
const BASE_US: Record<Series, number> = { push: 1500, connect: 40_000, api: 900 };

function valuesOf(series: Series, interval: number): number[] {
  const n = COUNTS[series][interval]!;
  // Spread each interval over ~9 ms so its percentiles differ from each other.
  return Array.from(
    { length: n },
    (_, k) => BASE_US[series] * (interval + 1) + ((k * 7919) % 97) ** 2,
  );
}

function histogramOf(values: readonly number[]): LatencyHistogram {
  const h = createLatencyHistogram();
  for (const v of values) recordUs(h, v);
  return h;
}

function makeIntervals(): IntervalHistograms[] {
  return [0, 1, 2].map((i) => ({
    startMs: i * 1000,
    endMs: (i + 1) * 1000,
    histograms: Object.fromEntries(SERIES.map((s) => [s, histogramOf(valuesOf(s, i))])),
  }));
}

function totalOf(series: Series): LatencyHistogram {
  return histogramOf([0, 1, 2].flatMap((i) => valuesOf(series, i)));
}

const QUANTILES = [0, 50, 90, 99, 100] as const;
const percentilesOf = (h: Histogram): number[] => QUANTILES.map((q) => h.getValueAtPercentile(q));

/** The table rows of `.hgrm` text: Value, Percentile, TotalCount (the 4th column's rounding is not compared). */
const hgrmRows = (text: string): string[][] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^\d/.test(l))
    .map((l) => l.split(/\s+/).slice(0, 3));

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pushbench-hdr-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('HdrHistogram interval log', () => {
  it('is read back by hdr-histogram-js with every tag, interval, count and percentile', async () => {
    const intervals = makeIntervals();
    const path = join(dir, 'roundtrip.hlog');
    await writeHdrLog(path, intervals, { startTimeMsEpoch: START_MS_EPOCH });
    const text = await readFile(path, 'utf8');

    expect(listTags(text).sort()).toEqual([...SERIES].sort());
    const reader = new HistogramLogReader(text);
    const byTag = new Map<string, Histogram[]>();
    for (let h = reader.nextIntervalHistogram(); h !== null; h = reader.nextIntervalHistogram()) {
      byTag.set(h.tag, [...(byTag.get(h.tag) ?? []), h]);
    }
    for (const series of SERIES) {
      const read = byTag.get(series) ?? [];
      expect(read.map((h) => h.totalCount)).toEqual(COUNTS[series]);
      read.forEach((h, i) => {
        expect(Math.round(h.startTimeStampMsec)).toBe(START_MS_EPOCH + i * 1000);
        expect(Math.round(h.endTimeStampMsec)).toBe(START_MS_EPOCH + (i + 1) * 1000);
        expect(percentilesOf(h)).toEqual(percentilesOf(intervals[i]!.histograms[series]!));
      });
      const total = createLatencyHistogram();
      for (const h of read) total.add(h);
      expect(total.totalCount).toBe(totalOf(series).totalCount);
      expect(percentilesOf(total)).toEqual(percentilesOf(totalOf(series)));
    }
  });

  it('has the v1.3 header and one 4-field tagged line per interval per series', async () => {
    const intervals = makeIntervals();
    const path = join(dir, 'format.hlog');
    await writeHdrLog(path, intervals, { startTimeMsEpoch: START_MS_EPOCH });
    const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');

    expect(lines[0]).toBe('#[Histogram log format version 1.3]');
    expect(lines[1]).toMatch(
      /^#\[StartTime: 1700000000\.123 \(seconds since epoch\), 2023-11-14T22:13:20\.123Z\]$/,
    );
    expect(lines).toContain(
      '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    );
    const data = lines.filter((l) => !l.startsWith('#') && !l.startsWith('"'));
    expect(data).toHaveLength(3 * SERIES.length);
    data.forEach((line, n) => {
      const interval = Math.floor(n / SERIES.length);
      const series = SERIES[n % SERIES.length]!;
      const [tag, ...fields] = line.split(',');
      expect(tag).toBe(`Tag=${series}`);
      expect(fields).toHaveLength(4);
      const [start, length, max, histogram] = fields;
      expect(start).toBe(`${interval}.000`);
      expect(length).toBe('1.000');
      // Interval_Max is in ms; an empty interval logs 0.000.
      const maxUs = intervals[interval]!.histograms[series]!.getValueAtPercentile(100);
      expect(max).toBe((maxUs / 1000).toFixed(3));
      expect(histogram).toMatch(/^HIST[A-Za-z0-9+/=]+$/);
    });
    // The empty api interval is written, not skipped, so the gap stays visible.
    expect(data.filter((l) => l.startsWith('Tag=api,1.000,1.000,0.000,'))).toHaveLength(1);
  });

  it('is rebuilt into intervals by readHdrLog, empty intervals included', async () => {
    const intervals = makeIntervals();
    const path = join(dir, 'ours.hlog');
    await writeHdrLog(path, intervals, { startTimeMsEpoch: START_MS_EPOCH });
    const log = await readHdrLog(path);

    expect(log.startTimeMsEpoch).toBe(START_MS_EPOCH);
    expect(log.intervals.map((i) => [i.startMs, i.endMs])).toEqual([
      [0, 1000],
      [1000, 2000],
      [2000, 3000],
    ]);
    log.intervals.forEach((interval, i) => {
      expect(Object.keys(interval.histograms)).toEqual([...SERIES]);
      for (const series of SERIES) {
        const h = interval.histograms[series]!;
        expect(h.totalCount).toBe(COUNTS[series][i]);
        expect(percentilesOf(h)).toEqual(percentilesOf(intervals[i]!.histograms[series]!));
      }
    });
  });

  it('prefixes tags on write and strips the prefix on read', async () => {
    const path = join(dir, 'prefixed.hlog');
    await writeHdrLog(path, makeIntervals(), {
      startTimeMsEpoch: START_MS_EPOCH,
      tagPrefix: 'run-a.',
    });
    const text = await readFile(path, 'utf8');
    expect(listTags(text).sort()).toEqual(['run-a.api', 'run-a.connect', 'run-a.push']);
    const log = await readHdrLog(path, { tagPrefix: 'run-a.' });
    expect(Object.keys(log.intervals[0]!.histograms)).toEqual([...SERIES]);
    expect((await readHdrLog(path, { tagPrefix: 'run-b.' })).intervals).toEqual([]);
  });

  it('refuses tags the Java reader would split', async () => {
    const bad: IntervalHistograms[] = [
      { startMs: 0, endMs: 1000, histograms: { 'push node-1': histogramOf([1000]) } },
    ];
    await expect(
      writeHdrLog(join(dir, 'bad.hlog'), bad, { startTimeMsEpoch: START_MS_EPOCH }),
    ).rejects.toMatchObject({ code: 'PB_USAGE' });
  });

  it('names the line of a corrupt log', async () => {
    const path = join(dir, 'corrupt.hlog');
    await writeHdrLog(path, makeIntervals(), { startTimeMsEpoch: START_MS_EPOCH });
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[6] = 'Tag=push,1.000,1.000,not-a-histogram';
    await writeFile(path, lines.join('\n'));
    await expect(readHdrLog(path)).rejects.toThrow(/corrupt\.hlog:7 /);
  });
});

describe('.hgrm percentile distribution', () => {
  it('is in milliseconds with the Mean/Max/Total count footer', async () => {
    // 60 samples of 1000 µs and 40 of 5000 µs: the median is 1 ms.
    const h = histogramOf([...Array<number>(60).fill(1000), ...Array<number>(40).fill(5000)]);
    const path = join(dir, 'ms.hgrm');
    await writeHgrm(path, h);
    const text = await readFile(path, 'utf8');
    const lines = text.split('\n');

    expect(lines[0]!.trim().split(/\s+/)).toEqual([
      'Value',
      'Percentile',
      'TotalCount',
      '1/(1-Percentile)',
    ]);
    const median = hgrmRows(text).find((c) => c[1] === '0.500000000000');
    expect(median).toEqual(['1.000', '0.500000000000', '60']);
    // 5000 µs falls in a 4 µs bucket; the table shows the bucket's highest value.
    expect(hgrmRows(text).at(-1)).toEqual(['5.003', '1.000000000000', '100']);
    expect(text).toMatch(/^#\[Mean {4}= +2\.60\d, StdDeviation {3}= +1\.9\d\d\]$/m);
    expect(text).toMatch(/^#\[Max {5}= +5\.00\d, Total count {4}= +100\]$/m);
  });

  it('is written for each series with samples by writeHdrOutputs, beside latency.hlog', async () => {
    const out = join(dir, 'outputs');
    const totals = { push: totalOf('push'), connect: totalOf('connect'), api: histogramOf([]) };
    const written = await writeHdrOutputs(out, {
      intervals: makeIntervals(),
      totals,
      startTimeMsEpoch: START_MS_EPOCH,
    });
    expect(written).toEqual([
      join(out, 'latency.hlog'),
      join(out, 'push.hgrm'),
      join(out, 'connect.hgrm'),
    ]);
    const pushHgrm = await readFile(join(out, 'push.hgrm'), 'utf8');
    expect(pushHgrm).toMatch(new RegExp(`Total count {4}= +${totalOf('push').totalCount}\\]`));
    await expect(access(join(out, 'api.hgrm'))).rejects.toThrow();

    const noLog = join(dir, 'outputs-no-log');
    expect(
      await writeHdrOutputs(noLog, {
        intervals: [],
        totals,
        startTimeMsEpoch: START_MS_EPOCH,
        writeLog: false,
      }),
    ).toEqual([join(noLog, 'push.hgrm'), join(noLog, 'connect.hgrm')]);
  });

  it('refuses series names that would escape the results folder', async () => {
    await expect(
      writeHdrOutputs(join(dir, 'escape'), {
        intervals: [],
        totals: { '../push': histogramOf([1000]) },
        startTimeMsEpoch: START_MS_EPOCH,
      }),
    ).rejects.toMatchObject({ code: 'PB_USAGE' });
    await expect(access(join(dir, 'escape'))).rejects.toThrow();
  });
});

/** Where Debian's libhdrhistogram-java package puts the Java HdrHistogram library. */
const HDR_JAR = '/usr/share/java/hdrhistogram.jar';
/** A slow mirror can take minutes; the package itself is small. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;

/**
 * The Java HdrHistogram jar, installing `libhdrhistogram-java` with apt-get when
 * it is missing (tests run as root). Throws, never skips, when that fails: this
 * test is the only check that a reader we did not write accepts our files.
 */
async function ensureHdrHistogramJar(): Promise<string> {
  const present = async (): Promise<boolean> =>
    access(HDR_JAR).then(
      () => true,
      () => false,
    );
  try {
    await execa('java', ['-version'], { all: true });
  } catch (err) {
    throw new Error(
      `\`java -version\` failed (${(err as Error).message.split('\n')[0]}); install a JRE ` +
        '(apt-get install -y default-jre-headless) to run the Java HdrHistogram cross-check',
    );
  }
  if (await present()) return HDR_JAR;
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    execa('apt-get', ['install', '-y', '--no-install-recommends', 'libhdrhistogram-java'], {
      env,
      timeout: INSTALL_TIMEOUT_MS,
      all: true,
    });
  try {
    await install().catch(async () => {
      // Package lists may be missing or stale on a fresh machine.
      await execa('apt-get', ['update'], { env, timeout: INSTALL_TIMEOUT_MS, all: true });
      await install();
    });
  } catch (err) {
    const output = (err as { all?: string }).all ?? '';
    throw new Error(
      `${HDR_JAR} is missing and \`apt-get install libhdrhistogram-java\` failed ` +
        `(${(err as Error).message.split('\n')[0]}); install it by hand and rerun.\n` +
        output.split('\n').slice(-20).join('\n'),
    );
  }
  if (!(await present())) {
    throw new Error(`apt-get installed libhdrhistogram-java but ${HDR_JAR} is still missing`);
  }
  return HDR_JAR;
}

describe('Java HdrHistogram HistogramLogProcessor', () => {
  let jar: string;

  beforeAll(
    async () => {
      jar = await ensureHdrHistogramJar();
    },
    INSTALL_TIMEOUT_MS * 2 + 60_000,
  );

  it('reads our log: tags, per-interval counts and the push distribution match ours', async () => {
    const intervals = makeIntervals();
    const path = join(dir, 'java.hlog');
    await writeHdrLog(path, intervals, { startTimeMsEpoch: START_MS_EPOCH });
    const processor = ['-cp', jar, 'org.HdrHistogram.HistogramLogProcessor', '-i', path];

    const tags = await execa('java', [...processor, '-listtags']);
    expect(tags.stdout.split('\n').slice(1).sort()).toEqual([...SERIES].sort());

    const outBase = join(dir, 'java-push');
    await execa('java', [
      ...processor,
      '-tag',
      'push',
      '-outputValueUnitRatio',
      '1000',
      '-o',
      outBase,
    ]);
    // Timeline lines look like `1.000: I:500 ( 50% 90% Max ) T:500 ( ... )`.
    const timeline = await readFile(outBase, 'utf8');
    const perInterval = [...timeline.matchAll(/^\s*[\d.]+: I:(\d+) /gm)].map((m) => Number(m[1]));
    expect(perInterval).toEqual(COUNTS.push);

    const javaHgrm = await readFile(`${outBase}.hgrm`, 'utf8');
    const total = totalOf('push');
    expect(javaHgrm).toMatch(new RegExp(`Total count {4}= +${total.totalCount}\\]`));
    const median = hgrmRows(javaHgrm).find((r) => r[1] === '0.500000000000');
    expect(median?.[0]).toBe((total.getValueAtPercentile(50) / 1000).toFixed(3));

    const oursPath = join(dir, 'ours-push.hgrm');
    await writeHgrm(oursPath, total);
    expect(hgrmRows(javaHgrm)).toEqual(hgrmRows(await readFile(oursPath, 'utf8')));
  });
});
