/**
 * Repeated runs (`pushbench run --repeat N`): each figure's median, spread and
 * per-repeat values; the gates over the repeats; between variants of a matrix, which
 * differences the repeats show at 95 % (Welch's t-test on the per-repeat values) and
 * how many repeats a difference of the observed size would need; within a run of
 * several regions, the same between regions. Pure: run/repeats.ts runs the repeats.
 */

import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PushbenchError } from '../core/errors.js';
import { formatMs } from '../core/units.js';
import { compareMetricsFor, readReport, textTable } from './compare.js';
import { findMetric, repeatStatistic } from './gates/metrics.js';
import {
  evaluateGate,
  type GateInputs,
  type GateResult,
  parseGate,
  worstVerdict,
} from './gates.js';
import { exitCodeOfVerdict, type Report, type Verdict } from './report.js';
import { repeatsNeeded, welchTest } from './stats.js';

/** The figures a gate reads, from a finished report. */
export function gateInputsOf(r: Report): GateInputs {
  return {
    delivery: r.delivery,
    latency: r.latency,
    connections: { ...r.devices },
    skew: r.skew,
    storm: r.storm,
    faults: r.faults,
    regions: r.regions,
    crashed: r.faults.filter((f) => f.action === 'crash').length,
  };
}

/** One figure over the repeats. */
export interface RepeatFigure {
  metric: string;
  unit: 'ms' | '%' | 'count' | 'ratio';
  better: 'lower' | 'higher';
  /** Each repeat's value, in run order (null: not measured in that repeat). */
  values: (number | null)[];
  median: number | null;
  min: number | null;
  max: number | null;
  /** Standard deviation over the repeats (n - 1); null with fewer than two values. */
  sd: number | null;
}

/** A variant's repeats summed up. */
export interface RepeatSummary {
  label: string;
  repeats: number;
  /** The scenario's regions, in its order. */
  regions: string[];
  /** Invalid if any repeat was; else the worst gate verdict. */
  verdict: Verdict;
  exitCode: number;
  /** Per repeat, in run order. */
  verdicts: Verdict[];
  figures: RepeatFigure[];
  /**
   * The scenario's gates over the repeats: a `median(...)`-style gate once, on every
   * repeat's figure; a plain gate by its worst repeat.
   */
  gates: GateResult[];
}

function figure(
  metric: string,
  unit: RepeatFigure['unit'],
  better: RepeatFigure['better'],
  values: (number | null)[],
): RepeatFigure {
  const present = values.filter((v): v is number => v !== null);
  const mean = present.reduce((a, b) => a + b, 0) / Math.max(1, present.length);
  return {
    metric,
    unit,
    better,
    values,
    median: repeatStatistic('median', present),
    min: repeatStatistic('min', present),
    max: repeatStatistic('max', present),
    sd:
      present.length > 1
        ? Math.sqrt(present.reduce((a, v) => a + (v - mean) ** 2, 0) / (present.length - 1))
        : null,
  };
}

/** The figures of some runs, with each region's crashes, skew and push p99 when there are several regions. */
function figuresOf(reports: readonly Report[]): RepeatFigure[] {
  const out = compareMetricsFor(reports).map((m) =>
    figure(
      m.name,
      m.unit,
      m.better,
      reports.map((r) => m.read(r)),
    ),
  );
  for (const name of regionMetricNames(reports)) {
    if (out.some((f) => f.metric === name)) continue;
    const metric = findMetric(name)!;
    const unit = metric.kind === 'duration' ? 'ms' : metric.kind === 'count' ? 'count' : 'ratio';
    out.push(
      figure(
        name,
        unit,
        'lower',
        reports.map((r) => metric.read(gateInputsOf(r)).value),
      ),
    );
  }
  return out;
}

/** Per-region figures worth setting side by side, for runs of two or more regions. */
function regionMetricNames(reports: readonly Report[]): string[] {
  const regions = regionsOf(reports);
  if (regions.length < 2) return [];
  return regions.flatMap((r) => [
    `nodes.crashed@${r}`,
    `skew.max@${r}`,
    `skew.final@${r}`,
    ...(reports.some((x) => (x.latency[`push@${r}`]?.count ?? 0) > 0) ? [`p99(push@${r})`] : []),
  ]);
}

/** The regions of the runs, in the scenario's order. */
function regionsOf(reports: readonly Report[]): string[] {
  const fromConfig = reports[0]?.config?.topology?.regions?.map((r) => r.name);
  return fromConfig ?? Object.keys(reports[0]?.regions ?? {});
}

/** Sums up one variant's repeats and evaluates the scenario's gates over them. */
export function summarizeRepeats(label: string, reports: readonly Report[]): RepeatSummary {
  if (reports.length === 0) throw new RangeError('summarizeRepeats: no repeats');
  const inputs = reports.map(gateInputsOf);
  const last = reports[reports.length - 1]!;
  const gates = last.gates.map((g, gi): GateResult => {
    const gate = parseGate(g.expr);
    if (findMetric(gate.metric)?.repeatStat) {
      return evaluateGate(gate, { ...inputs[inputs.length - 1]!, repeats: inputs });
    }
    // A plain gate holds over the repeats only if it held in each: its worst repeat.
    const each = reports.map((r) => r.gates[gi]!);
    const rank = { pass: 0, inconclusive: 1, fail: 2 } as const;
    const worst = each.reduce((a, b) => (rank[b.verdict] > rank[a.verdict] ? b : a));
    return { ...worst, detail: `worst of ${reports.length} repeats: ${worst.detail}` };
  });
  const verdicts = reports.map((r) => r.verdict);
  const verdict: Verdict = verdicts.includes('invalid') ? 'invalid' : worstVerdict(gates);
  return {
    label,
    repeats: reports.length,
    regions: regionsOf(reports),
    verdict,
    exitCode: exitCodeOfVerdict[verdict],
    verdicts,
    figures: figuresOf(reports),
    gates,
  };
}

/** One figure set side by side over repeats: two variants, or two regions of each repeat. */
export interface RepeatContrast {
  metric: string;
  better: 'lower' | 'higher';
  unit: RepeatFigure['unit'];
  /** Medians of the two sides. */
  a: number | null;
  b: number | null;
  /** Welch's t-test on the per-repeat values, two-sided; null when either side has fewer than two. */
  p: number | null;
  /** At 95 % over the whole table: Holm's step-down over every row's p (see {@link holm}). */
  significant: boolean;
  /** Difference of the two sides' means, and their pooled per-repeat standard deviation; null when untestable. */
  delta: number | null;
  pooledSd: number | null;
  /**
   * Repeats per side a difference of this size would need with 80 % power at 95 %,
   * counting every test of its table (null: no difference, or untestable).
   */
  repeatsNeeded: number | null;
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

function contrast(
  metric: string,
  unit: RepeatFigure['unit'],
  better: RepeatFigure['better'],
  a: readonly (number | null)[],
  b: readonly (number | null)[],
): RepeatContrast {
  const x = a.filter((v): v is number => v !== null);
  const y = b.filter((v): v is number => v !== null);
  const p = x.length > 1 && y.length > 1 ? welchTest(x, y) : null;
  const fa = figure(metric, unit, better, [...a]);
  const fb = figure(metric, unit, better, [...b]);
  let delta: number | null = null;
  let pooledSd: number | null = null;
  if (x.length > 1 && y.length > 1) {
    const mean = (v: number[]) => v.reduce((s, w) => s + w, 0) / v.length;
    delta = mean(x) - mean(y);
    pooledSd = Math.sqrt(((fa.sd ?? 0) ** 2 + (fb.sd ?? 0) ** 2) / 2);
  }
  return {
    metric,
    better,
    unit,
    a: fa.median,
    b: fb.median,
    p,
    significant: false,
    delta,
    pooledSd,
    // For this test alone; holm() sets it for the table the row is judged in.
    repeatsNeeded:
      delta === null || pooledSd === null ? null : finite(repeatsNeeded(delta, pooledSd)),
  };
}

/**
 * Holm's step-down over a table of tests, so that the table as a whole calls something
 * significant by chance at most 5 % of the time (a table of 36 figures at 5 % each would
 * call about two). Sorted by p, the i-th smallest (from 0) must be at most 0.05 / (m - i),
 * m the rows with a p; the first that is not stops it. Sets `significant` on each row.
 */
export function holm(rows: RepeatContrast[]): RepeatContrast[] {
  const tested = rows.filter((r) => r.p !== null).sort((a, b) => a.p! - b.p!);
  const m = tested.length;
  // How many repeats a row's difference would need among this many tests (Bonferroni, so
  // enough for Holm too).
  for (const r of tested) {
    if (r.delta !== null && r.pooledSd !== null) {
      r.repeatsNeeded = finite(repeatsNeeded(r.delta, r.pooledSd, m));
    }
  }
  let stop = false;
  for (const [i, r] of tested.entries()) {
    if (!stop && r.p! <= 0.05 / (m - i)) r.significant = true;
    else stop = true;
  }
  return rows;
}

/** Two variants' repeats, figure by figure. */
export function contrastVariants(a: RepeatSummary, b: RepeatSummary): RepeatContrast[] {
  return holm(
    a.figures
      .map((fa) => {
        const fb = b.figures.find((f) => f.metric === fa.metric);
        return fb ? contrast(fa.metric, fa.unit, fa.better, fa.values, fb.values) : null;
      })
      .filter((c): c is RepeatContrast => c !== null),
  );
}

/** The first region against each other one, over the repeats of one variant. */
export function contrastRegions(
  summary: RepeatSummary,
): Array<{ a: string; b: string; rows: RepeatContrast[] }> {
  const [first, ...rest] = summary.regions;
  if (first === undefined) return [];
  // `@<region>` ends the name or its parenthesis: `eu` is not `eu-west`.
  const at = (r: string) => new RegExp(`@${r}(?=\\)?$)`);
  return rest.map((other) => ({
    a: first,
    b: other,
    rows: holm(
      summary.figures
        .filter((f) => at(first).test(f.metric))
        .flatMap((fa) => {
          const fb = summary.figures.find(
            (f) => f.metric === fa.metric.replace(at(first), `@${other}`),
          );
          return fb
            ? [
                contrast(
                  fa.metric.replace(at(first), '@*'),
                  fa.unit,
                  fa.better,
                  fa.values,
                  fb.values,
                ),
              ]
            : [];
        }),
    ),
  }));
}

function value(v: number | null, unit: RepeatFigure['unit']): string {
  if (v === null) return '-';
  if (unit === 'ms') return formatMs(v);
  if (unit === '%') return `${v.toFixed(v > 99.99 ? 4 : 3)}%`;
  if (unit === 'ratio') return v.toFixed(2);
  return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(1);
}

function contrastTable(
  head: [string, string, string],
  rows: readonly RepeatContrast[],
  repeats: number,
): string {
  return textTable([
    [...head, 'p', 'verdict'],
    ...rows.map((c) => [
      c.metric,
      value(c.a, c.unit),
      value(c.b, c.unit),
      c.p === null ? '-' : c.p < 0.001 ? '<0.001' : c.p.toFixed(3),
      c.significant
        ? 'significant'
        : c.repeatsNeeded === null
          ? 'no significant difference'
          : // The normal approximation undercounts at a handful of repeats: never fewer than one more.
            `no significant difference (~${Math.max(c.repeatsNeeded, repeats + 1)} repeats each to tell)`,
    ]),
  ]);
}

/** The repeats for a terminal: per variant its figures and gates; then the contrasts. */
export function renderRepeats(summaries: readonly RepeatSummary[]): string {
  const out: string[] = [];
  for (const s of summaries) {
    out.push(
      `${s.label}: ${s.repeats} repeats, verdicts ${s.verdicts.join(' ')}`,
      textTable([
        ['metric', 'median', 'min-max', 'per repeat'],
        ...s.figures
          .filter((f) => f.values.some((v) => v !== null))
          .map((f) => [
            f.metric,
            value(f.median, f.unit),
            `${value(f.min, f.unit)}-${value(f.max, f.unit)}`,
            f.values.map((v) => value(v, f.unit)).join(', '),
          ]),
      ]),
    );
    if (s.gates.length > 0) {
      out.push(
        '',
        textTable([
          ['gate over the repeats', 'actual', 'verdict'],
          ...s.gates.map((g) => [g.expr, g.actualText, g.verdict]),
        ]),
      );
    }
    for (const { a, b, rows } of contrastRegions(s)) {
      out.push(
        '',
        `regions ${a} vs ${b} over the repeats (medians; Welch's t-test, 95 % over the table by Holm):`,
      );
      out.push(contrastTable(['metric', a, b], rows, s.repeats));
    }
    out.push('');
  }
  const [first, ...others] = summaries;
  for (const other of others) {
    out.push(
      `${first!.label} vs ${other.label} over the repeats (medians; Welch's t-test, 95 % over the table by Holm):`,
      contrastTable(
        ['metric', first!.label, other.label],
        contrastVariants(first!, other).filter((c) => c.a !== null || c.b !== null),
        Math.min(first!.repeats, other.repeats),
      ),
      '',
    );
  }
  return out.join('\n');
}

/** Whether `dir` holds one variant's `--repeat` runs (repeat-<i>/ folders; a variant folder of a matrix too). */
export async function isRepeatFolder(dir: string): Promise<boolean> {
  try {
    return (await stat(dir)).isDirectory() && (await repeatDirs(dir)).length > 0;
  } catch {
    return false;
  }
}

async function repeatDirs(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => /^repeat-\d+$/.test(n));
  return names.sort((a, b) => Number(a.slice(7)) - Number(b.slice(7))).map((n) => join(dir, n));
}

/**
 * The repeats of a `--repeat` folder of one variant, summed up under the folder's name.
 * Throws `PB_USAGE` for a folder of several variants (compare its variant folders).
 */
export async function readRepeats(dir: string): Promise<RepeatSummary> {
  const dirs = await repeatDirs(dir);
  if (dirs.length === 0) {
    throw new PushbenchError(
      'PB_USAGE',
      `${dir} holds no repeat-<i> folders (a --repeat run with --matrix has one folder per variant: compare those)`,
    );
  }
  const reports: Report[] = [];
  for (const d of dirs) reports.push((await readReport(d)).report);
  return summarizeRepeats(basename(dir), reports);
}
