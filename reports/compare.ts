import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PushbenchError } from '../core/errors.js';
import type { Report } from './report.js';

/** Which way a metric improves. */
type Better = 'lower' | 'higher';

/** One compared metric. */
interface CompareMetric {
  name: string;
  unit: 'ms' | '%' | 'count' | 'ratio';
  better: Better;
  read(r: Report): number | null;
}

const latencyRows = (
  series: 'push' | 'connect' | 'api',
  stats: readonly ('p50' | 'p90' | 'p99' | 'p999' | 'max')[],
) =>
  stats.map(
    (stat): CompareMetric => ({
      name: `${stat}(${series})`,
      unit: 'ms',
      better: 'lower',
      read: (r) => (r.latency[series].count > 0 ? r.latency[series][stat] : null),
    }),
  );

/** The metrics `compare` puts side by side, in display order. */
export const compareMetrics: readonly CompareMetric[] = [
  {
    name: 'delivery',
    unit: '%',
    better: 'higher',
    read: (r) => (r.delivery.accepted > 0 ? r.delivery.rate * 100 : null),
  },
  { name: 'lost', unit: 'count', better: 'lower', read: (r) => r.delivery.lost },
  { name: 'rejected', unit: 'count', better: 'lower', read: (r) => r.delivery.rejected },
  {
    name: 'accepted/s',
    unit: 'count',
    better: 'higher',
    read: (r) =>
      r.config.durationMs > 0 ? r.delivery.accepted / (r.config.durationMs / 1000) : null,
  },
  ...latencyRows('push', ['p50', 'p90', 'p99', 'p999', 'max']),
  ...latencyRows('connect', ['p50', 'p99', 'max']),
  ...latencyRows('api', ['p99']),
  { name: 'established', unit: 'count', better: 'higher', read: (r) => r.devices.established },
  { name: 'held at end', unit: 'count', better: 'higher', read: (r) => r.devices.heldAtEnd },
  { name: 'connect failures', unit: 'count', better: 'lower', read: (r) => r.devices.failed },
  { name: 'skew.max', unit: 'ratio', better: 'lower', read: (r) => r.skew?.max ?? null },
];

/** One row of a comparison: a metric across the compared runs. */
export interface ComparisonRow {
  metric: string;
  unit: CompareMetric['unit'];
  better: Better;
  values: (number | null)[];
  /** Relative change of each run against the first (baseline): 0.25 = 25 % higher. */
  deltas: (number | null)[];
  /** Index of the best run for this metric, or null when all are equal or missing. */
  best: number | null;
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
  const rows = compareMetrics.map((m): ComparisonRow => {
    const values = reports.map((r) => m.read(r));
    const base = values[0] ?? null;
    const deltas = values.map((v) =>
      v === null || base === null || base === 0 ? null : (v - base) / base,
    );
    const present = values
      .map((v, i) => [v, i] as const)
      .filter((e): e is readonly [number, number] => e[0] !== null);
    let best: number | null = null;
    if (present.length > 1) {
      const sorted = [...present].sort((a, b) =>
        m.better === 'lower' ? a[0] - b[0] : b[0] - a[0],
      );
      best = sorted[0]![0] === sorted[sorted.length - 1]![0] ? null : sorted[0]![1];
    }
    return { metric: m.name, unit: m.unit, better: m.better, values, deltas, best };
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
    ...row.values.map(
      (v, i) => formatValue(v, row.unit) + (i === 0 ? '' : formatDelta(row.deltas[i] ?? null)),
    ),
    row.best === null ? '=' : (c.runs[row.best]?.label ?? ''),
  ]);
  return [header, verdicts, ...body];
}

/** The comparison as a plain-text table for a terminal. */
export function renderComparisonText(c: Comparison): string {
  const rows = comparisonCells(c);
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

/** The comparison as a Markdown table. */
export function renderComparisonMarkdown(c: Comparison): string {
  const rows = comparisonCells(c).map((r) => r.map((x) => x.replace(/\|/g, '\\|')));
  const [head, ...rest] = rows;
  return [
    `| ${head!.join(' | ')} |`,
    `|${head!.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rest.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n');
}
