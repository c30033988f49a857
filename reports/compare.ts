import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PushbenchError } from '../core/errors.js';
import type { LatencySummary } from '../core/measure/histogram.js';
import { decodeHistogram } from '../core/measure/histogram.js';
import { intervalBounds, percentileIntervals } from './percentile-ci.js';
import type { Report } from './report.js';
import { fisherExact, poissonRatesTest } from './stats.js';

/** Which way a metric improves. */
type Better = 'lower' | 'higher';

/** What a metric's significance is judged on. */
type Evidence =
  /** A percentile: its 95 % interval from the run's histogram (reports/percentile-ci.ts). */
  | { kind: 'interval'; read(r: Report): [number, number] | null }
  /** A proportion: `hits` of `trials`, compared with Fisher's exact test. */
  | { kind: 'proportion'; read(r: Report): { hits: number; trials: number } | null }
  /** A count over a time: two Poisson rates, compared by the conditional binomial test. */
  | { kind: 'rate'; read(r: Report): { count: number; seconds: number } | null }
  /** No test: a point figure only (skew), never called better. */
  | { kind: 'none' };

/** One compared metric. */
interface CompareMetric {
  name: string;
  unit: 'ms' | '%' | 'count' | 'ratio';
  better: Better;
  read(r: Report): number | null;
  evidence: Evidence;
}

type LatencyStat = 'p50' | 'p90' | 'p99' | 'p999' | 'max';

/** A run's summary of `series`, with intervals recomputed from its histogram when the report has none. */
function seriesOf(r: Report, series: string): LatencySummary | undefined {
  const s = r.latency[series];
  if (!s || s.count === 0 || s.ci) return s;
  const snapshot = r.histograms?.[series];
  if (!snapshot) return s;
  try {
    return { ...s, ci: percentileIntervals(decodeHistogram(snapshot)) };
  } catch {
    return s;
  }
}

const latencyRows = (series: string, stats: readonly LatencyStat[]) =>
  stats.map(
    (stat): CompareMetric => ({
      name: `${stat}(${series})`,
      unit: 'ms',
      better: 'lower',
      read: (r) => {
        const s = r.latency[series];
        return s && s.count > 0 ? s[stat] : null;
      },
      evidence:
        stat === 'max'
          ? { kind: 'none' }
          : {
              kind: 'interval',
              read: (r) => {
                const i = seriesOf(r, series)?.ci?.[stat];
                if (!i) return null;
                // An open side is unbounded: nothing beyond the sample can be excluded.
                const { lo, hi } = intervalBounds(i);
                return [lo ?? 0, hi ?? Number.POSITIVE_INFINITY];
              },
            },
    }),
  );

const of = (hits: number, trials: number) => (trials > 0 ? { hits, trials } : null);

/** A count shown as it is and tested as a proportion of `trials` (Fisher's exact test). */
const counted = (
  name: string,
  better: Better,
  hits: (r: Report) => number,
  trials: (r: Report) => number,
): CompareMetric => ({
  name,
  unit: 'count',
  better,
  read: hits,
  evidence: { kind: 'proportion', read: (r) => of(hits(r), trials(r)) },
});

/** The metrics every comparison has, in display order; latency series the runs add follow push, connect and api. */
const fixedMetrics = {
  head: [
    {
      name: 'delivery',
      unit: '%',
      better: 'higher',
      read: (r) => (r.delivery.accepted > 0 ? r.delivery.rate * 100 : null),
      evidence: { kind: 'proportion', read: (r) => of(r.delivery.delivered, r.delivery.accepted) },
    },
    counted(
      'lost',
      'lower',
      (r) => r.delivery.lost,
      (r) => r.delivery.accepted,
    ),
    counted(
      'rejected',
      'lower',
      (r) => r.delivery.rejected,
      (r) => r.delivery.sent,
    ),
    {
      name: 'accepted/s',
      unit: 'count',
      better: 'higher',
      read: (r) =>
        r.config.durationMs > 0 ? r.delivery.accepted / (r.config.durationMs / 1000) : null,
      evidence: {
        kind: 'rate',
        read: (r) =>
          r.config.durationMs > 0
            ? { count: r.delivery.accepted, seconds: r.config.durationMs / 1000 }
            : null,
      },
    },
    ...latencyRows('push', ['p50', 'p90', 'p99', 'p999', 'max']),
    ...latencyRows('connect', ['p50', 'p99', 'max']),
    ...latencyRows('api', ['p99']),
  ],
  tail: [
    counted(
      'established',
      'higher',
      (r) => r.devices.established,
      (r) => r.devices.requested,
    ),
    counted(
      'held at end',
      'higher',
      (r) => r.devices.heldAtEnd,
      (r) => r.devices.requested,
    ),
    counted(
      'connect failures',
      'lower',
      (r) => r.devices.failed,
      (r) => r.devices.requested,
    ),
    {
      name: 'skew.max',
      unit: 'ratio',
      better: 'lower',
      read: (r) => r.skew?.max ?? null,
      evidence: { kind: 'none' },
    },
  ],
} satisfies Record<string, CompareMetric[]>;

/** The metrics `compare` puts side by side for these reports, in display order. */
export function compareMetricsFor(reports: readonly Report[]): CompareMetric[] {
  const extra = [
    ...new Set(
      reports.flatMap((r) =>
        Object.keys(r.latency).filter(
          (k) => !['push', 'connect', 'api'].includes(k) && (r.latency[k]?.count ?? 0) > 0,
        ),
      ),
    ),
  ].sort();
  return [
    ...fixedMetrics.head,
    ...extra.flatMap((series) => latencyRows(series, ['p50', 'p99'])),
    ...fixedMetrics.tail,
  ];
}

/** At 95 %: Fisher's exact test below this p-value, or disjoint intervals. */
const ALPHA = 0.05;

/** Whether run a and run b differ on this metric at 95 %; null when the metric has no test or no data. */
function differs(m: CompareMetric, a: Report, b: Report): boolean | null {
  const e = m.evidence;
  if (e.kind === 'none') return null;
  if (e.kind === 'interval') {
    const x = e.read(a);
    const y = e.read(b);
    if (!x || !y) return null;
    return x[1] < y[0] || y[1] < x[0];
  }
  if (e.kind === 'rate') {
    const x = e.read(a);
    const y = e.read(b);
    if (!x || !y) return null;
    return poissonRatesTest(x.count, x.seconds, y.count, y.seconds) < ALPHA;
  }
  const x = e.read(a);
  const y = e.read(b);
  if (!x || !y) return null;
  return fisherExact(x.hits, x.trials, y.hits, y.trials) < ALPHA;
}

/** One row of a comparison: a metric across the compared runs. */
export interface ComparisonRow {
  metric: string;
  unit: CompareMetric['unit'];
  better: Better;
  values: (number | null)[];
  /** Relative change of each run against the first (baseline): 0.25 = 25 % higher. */
  deltas: (number | null)[];
  /** Each run's 95 % interval for a percentile, in ms (an open side as null); null for other metrics. */
  intervals: ([number | null, number | null] | null)[];
  /** Whether each run differs from the baseline at 95 % (null: the baseline itself, no test, or no data). */
  significant: (boolean | null)[];
  /**
   * Index of the best run: better by its figure and, at 95 %, than every other run. Null
   * when all are equal or missing, when no test separates the best from the rest, or
   * when the metric has no test; `bestNote` then says which.
   */
  best: number | null;
  bestNote?: 'no significant difference' | 'not tested';
}

/** Reports side by side. The first run is the baseline of every delta. */
export interface Comparison {
  kind: 'pushbench-comparison';
  runs: {
    label: string;
    scenario: string;
    verdict: Report['verdict'];
    exitCode: number;
    valid: boolean;
    startedAt: string;
    path?: string;
  }[];
  rows: ComparisonRow[];
}

/** Compares reports metric by metric; `labels` name the runs (defaults: scenario names). */
export function compareReports(reports: readonly Report[], labels?: readonly string[]): Comparison {
  if (reports.length < 2)
    throw new PushbenchError('PB_USAGE', 'compare needs at least two reports');
  const rows = compareMetricsFor(reports).map((m): ComparisonRow => {
    const values = reports.map((r) => m.read(r));
    const base = values[0] ?? null;
    const deltas = values.map((v) =>
      v === null || base === null || base === 0 ? null : (v - base) / base,
    );
    const intervals = reports.map((r) => {
      if (m.evidence.kind !== 'interval') return null;
      const i = m.evidence.read(r);
      return i ? ([i[0], Number.isFinite(i[1]) ? i[1] : null] as [number, number | null]) : null;
    });
    const significant = reports.map((r, i) => (i === 0 ? null : differs(m, reports[0]!, r)));
    const present = values
      .map((v, i) => [v, i] as const)
      .filter((e): e is readonly [number, number] => e[0] !== null);
    let best: number | null = null;
    let bestNote: ComparisonRow['bestNote'];
    if (present.length > 1) {
      const sorted = [...present].sort((a, b) =>
        m.better === 'lower' ? a[0] - b[0] : b[0] - a[0],
      );
      const top = sorted[0]!;
      if (top[0] !== sorted[sorted.length - 1]![0]) {
        if (m.evidence.kind === 'none') bestNote = 'not tested';
        else {
          const others = present.filter(([, i]) => i !== top[1]);
          const clear = others.every(([, i]) => differs(m, reports[top[1]]!, reports[i]!) === true);
          if (clear) best = top[1];
          else bestNote = 'no significant difference';
        }
      }
    }
    return {
      metric: m.name,
      unit: m.unit,
      better: m.better,
      values,
      deltas,
      intervals,
      significant,
      best,
      ...(bestNote && { bestNote }),
    };
  });
  return {
    kind: 'pushbench-comparison',
    runs: reports.map((r, i) => ({
      label: labels?.[i] ?? r.scenario,
      scenario: r.scenario,
      verdict: r.verdict,
      exitCode: r.exitCode,
      valid: r.generator.valid,
      startedAt: r.startedAt,
    })),
    rows,
  };
}

/** Reads a report.json given its path or its results folder; throws `PB_USAGE` with the reason otherwise. */
export async function readReport(pathOrDir: string): Promise<{ report: Report; path: string }> {
  let path = pathOrDir;
  try {
    if ((await stat(pathOrDir)).isDirectory()) path = join(pathOrDir, 'report.json');
  } catch {
    throw new PushbenchError('PB_USAGE', `${pathOrDir} does not exist`);
  }
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new PushbenchError(
      'PB_USAGE',
      `${path} is not a readable report.json: ${(err as Error).message}`,
    );
  }
  const r = value as Partial<Report> | null;
  if (r?.schemaVersion !== 1 || typeof r.scenario !== 'string' || !r.delivery || !r.latency) {
    throw new PushbenchError('PB_USAGE', `${path} is not a pushbench report (schemaVersion 1)`);
  }
  return { report: r as Report, path };
}

/** A short label for a report file: its results folder's name. */
export function labelOf(path: string): string {
  return basename(dirname(path));
}

function formatValue(v: number | null, unit: ComparisonRow['unit']): string {
  if (v === null) return '-';
  switch (unit) {
    case 'ms':
      return v < 10 ? `${v.toFixed(2)}ms` : `${v.toFixed(1)}ms`;
    case '%':
      return `${v.toFixed(v > 99.99 ? 4 : 3)}%`;
    case 'ratio':
      return v.toFixed(2);
    case 'count':
      return Math.round(v).toLocaleString('en-US');
  }
}

function formatDelta(d: number | null): string {
  if (d === null) return '';
  if (d === 0) return ' (=)';
  const sign = d > 0 ? '+' : '';
  return ` (${sign}${(d * 100).toFixed(Math.abs(d) < 0.1 ? 1 : 0)}%)`;
}

/** The comparison as table rows of text: metric, each run's value with its delta, best. */
export function comparisonCells(c: Comparison): string[][] {
  const header = ['metric', ...c.runs.map((r) => r.label), 'best'];
  const verdicts = ['verdict', ...c.runs.map((r) => r.verdict), ''];
  const body = c.rows.map((row) => [
    `${row.metric} (${row.better} is better)`,
    ...row.values.map((v, i) => {
      const interval = row.intervals?.[i];
      const ci = interval
        ? ` [${formatValue(interval[0], row.unit)}-${interval[1] === null ? '..' : formatValue(interval[1], row.unit)}]`
        : '';
      if (i === 0) return formatValue(v, row.unit) + ci;
      const sig = row.significant?.[i];
      const mark = sig === true ? ' *' : '';
      return formatValue(v, row.unit) + ci + formatDelta(row.deltas[i] ?? null) + mark;
    }),
    row.best !== null ? (c.runs[row.best]?.label ?? '') : (row.bestNote ?? '='),
  ]);
  return [header, verdicts, ...body];
}

/** The line under every comparison table: what the brackets and stars mean. */
export const COMPARISON_LEGEND =
  '[lo-hi]: 95% interval of a percentile (order statistics, widened by batch means over the run\'s seconds; ".." unbounded); * differs from the first run at 95% (disjoint intervals, or Fisher\'s exact test on the counts); best: better than every other run at 95%, else "no significant difference"';

/** Rows as a plain-text table: the first column left-aligned, the others right-aligned. */
export function textTable(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The comparison as a plain-text table for a terminal. */
export function renderComparisonText(c: Comparison): string {
  return `${textTable(comparisonCells(c))}\n${COMPARISON_LEGEND}`;
}

/** The comparison as a Markdown table. */
export function renderComparisonMarkdown(c: Comparison): string {
  const rows = comparisonCells(c).map((r) => r.map((x) => x.replace(/\|/g, '\\|')));
  const [head, ...rest] = rows;
  return [
    `| ${head!.join(' | ')} |`,
    `|${head!.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rest.map((r) => `| ${r.join(' | ')} |`),
    '',
    `<sub>${COMPARISON_LEGEND}</sub>`,
    '',
  ].join('\n');
}
