/**
 * Gates: pass/fail conditions on a finished run, written the same way in scenario files
 * and on the CLI (`--gate "p99(push) < 50ms"`).
 *
 * Grammar (whitespace anywhere between tokens):
 *
 *   gate      := metric op threshold
 *   metric    := a name from the metric table: `delivery`, `connections.held`, `skew.max`,
 *                `connections.established`, or `<stat>(<series>)`
 *   op        := `<` | `<=` | `>` | `>=`
 *   threshold := number unit?   percent metrics: `99.9%` or a fraction in [0, 1];
 *                               duration metrics: `us` | `ms` | `s` | `m`, bare = ms
 *
 * A gate on a proportion measured by counting trials (delivery) with `>=` or `>` is
 * statistical: it passes only when the Clopper-Pearson upper bound on the failure rate
 * clears the threshold, and says `inconclusive` (with how many trials would be needed)
 * when the run was too small to tell.
 */

import { PushbenchError } from '../core/errors.js';
import type { LatencySummary } from '../core/measure/histogram.js';
import { formatCount, formatMs, parseDurationMs } from '../core/units.js';
import { clopperPearsonUpper, requiredTrials } from './stats.js';

export type { LatencySummary };

/** The latency series a run records, in milliseconds. */
export const LATENCY_SERIES = [
  'push',
  'connect',
  'api',
  'd2d',
  'd2d_cold',
  'd2d_warm',
  'room',
  'reconnect',
] as const;

/** One of {@link LATENCY_SERIES}. */
export type LatencySeries = (typeof LATENCY_SERIES)[number];

/** The statistics of a latency series a gate can name (`p99.9` is accepted for `p999`). */
export const LATENCY_STATS = ['p50', 'p75', 'p90', 'p99', 'p999', 'max', 'min', 'mean'] as const;

/** One of {@link LATENCY_STATS}. */
export type LatencyStat = (typeof LATENCY_STATS)[number];

/** Other spellings of a statistic, mapped to the canonical one. */
const LATENCY_STAT_ALIASES: Readonly<Record<string, LatencyStat>> = { 'p99.9': 'p999' };

/** The figures of a finished run that gates are evaluated against. */
export interface GateInputs {
  delivery: { accepted: number; delivered: number; lost: number };
  /** Keyed by series name (see {@link LATENCY_SERIES}); a series with no data may be absent. */
  latency: Partial<Record<string, LatencySummary>>;
  connections: {
    requested: number;
    established: number;
    heldAtEnd: number;
    /** What the nodes themselves counted just before the fleet closed; null when unread. */
    heldAtServer?: number | null;
  };
  /** Per-node connection skew (max/mean over nodes), worst sample and last sample. */
  skew?: { max: number | null; final: number | null };
  /** Reconnect storm figures (reports/storm.ts); times in seconds. */
  storm?: {
    losses: number;
    peakAttemptsPerSec: number;
    attemptsPerDevice: number | null;
    notBack: number;
    lossToBack: { p50: number | null; p99: number | null; p100: number | null };
  };
  /** Per-fault figures by label; times in seconds from the fault. */
  faults?: Array<{
    label: string;
    affected: number;
    peakAttemptsPerSec: number;
    lostMessages: number;
    attemptsPerDevice: number | null;
    reconnected: { p50: number | null; p99: number | null; p100: number | null };
    skewSettledAfterS?: number | null;
  }>;
  /** Per-region figures: nodes that fell over on their own, skew over the region's nodes. */
  regions?: Record<string, { crashed: number; skew: { max: number | null; final: number | null } }>;
  /** Nodes that fell over on their own during the run. */
  crashed?: number;
}

/** A comparison operator a gate may use. */
export type GateOp = '<' | '<=' | '>' | '>=';

/** A parsed gate. `threshold` is a fraction for percent metrics and milliseconds for durations. */
export interface Gate {
  expr: string;
  metric: string;
  op: GateOp;
  threshold: number;
  kind: 'percent' | 'duration' | 'ratio' | 'count';
}

/** The outcome of a gate: `inconclusive` when the run cannot tell (too few samples, no data). */
export type GateVerdict = 'pass' | 'fail' | 'inconclusive';

/** One evaluated gate, for reports and the exit code. */
export interface GateResult {
  expr: string;
  metric: string;
  op: GateOp;
  /** As in {@link Gate}: a fraction or milliseconds. */
  threshold: number;
  /** The measured value (fraction or ms), or null when there was nothing to measure. */
  actual: number | null;
  /** `actual` for humans: `99.998%`, `12.3ms`, `n/a`. */
  actualText: string;
  verdict: GateVerdict;
  /** Same as `verdict === 'pass'`. */
  pass: boolean;
  /** One line saying why. */
  detail: string;
  /** For an inconclusive statistical gate: trials needed (with no further failures) to decide. */
  needed?: number;
}

/** Counts behind a proportion: `failures` out of `trials` (e.g. messages lost out of accepted). */
interface BinomialSample {
  failures: number;
  trials: number;
}

/** What reading a metric from {@link GateInputs} gives. */
interface MetricReading {
  /** Fraction or milliseconds; null when there is nothing to measure. */
  value: number | null;
  /** Why `value` is null, e.g. "no samples". */
  missing?: string;
  /** Present for statistical metrics: the counts the value was estimated from. */
  sample?: BinomialSample;
}

/** One row of the metric table. */
interface GateMetric {
  /** Canonical name, as it appears in {@link Gate.metric}. */
  name: string;
  aliases?: readonly string[];
  kind: 'percent' | 'duration' | 'ratio' | 'count';
  /**
   * True when the value is a success proportion estimated from counted trials: `>=` and
   * `>` gates on it are decided by a confidence bound, not the point estimate.
   */
  statistical?: boolean;
  read(inputs: GateInputs): MetricReading;
}

function ratio(numerator: number, denominator: number, missing: string): MetricReading {
  return denominator > 0 ? { value: numerator / denominator } : { value: null, missing };
}

function latencyMetric(stat: LatencyStat, series: LatencySeries): GateMetric {
  const aliases = Object.entries(LATENCY_STAT_ALIASES)
    .filter(([, canonical]) => canonical === stat)
    .map(([alias]) => `${alias}(${series})`);
  // `reconnect.p99` reads better than `p99(reconnect)` for the time a device takes to come back.
  if (series === 'reconnect') aliases.push(`reconnect.${stat}`);
  return {
    name: `${stat}(${series})`,
    aliases,
    kind: 'duration',
    read(inputs) {
      const summary = inputs.latency[series];
      if (!summary || summary.count === 0) return { value: null, missing: 'no samples' };
      return { value: summary[stat] };
    },
  };
}

/**
 * Every metric a gate can name. Add a row here to add a metric; parsing, help text and
 * evaluation all read this table.
 */
const METRICS: readonly GateMetric[] = [
  {
    name: 'delivery',
    kind: 'percent',
    statistical: true,
    read({ delivery }) {
      const sample = { failures: delivery.lost, trials: delivery.accepted };
      if (delivery.accepted <= 0) return { value: null, missing: 'no messages accepted', sample };
      return { value: delivery.delivered / delivery.accepted, sample };
    },
  },
  {
    name: 'connections.held',
    kind: 'percent',
    read: ({ connections: c }) => ratio(c.heldAtEnd, c.requested, 'no connections requested'),
  },
  {
    name: 'connections.heldAtServer',
    kind: 'percent',
    read: ({ connections: c }) =>
      c.heldAtServer == null
        ? { value: null, missing: "the nodes' counts were not read" }
        : ratio(c.heldAtServer, c.requested, 'no connections requested'),
  },
  {
    name: 'connections.established',
    kind: 'percent',
    read: ({ connections: c }) => ratio(c.established, c.requested, 'no connections requested'),
  },
  {
    name: 'skew.max',
    kind: 'ratio',
    read: ({ skew }) =>
      skew?.max == null ? { value: null, missing: 'no per-node samples' } : { value: skew.max },
  },
  {
    name: 'skew.final',
    kind: 'ratio',
    read: ({ skew }) =>
      skew?.final == null ? { value: null, missing: 'no per-node samples' } : { value: skew.final },
  },
  ...LATENCY_STATS.flatMap((stat) => LATENCY_SERIES.map((series) => latencyMetric(stat, series))),
];

const metricsByName: ReadonlyMap<string, GateMetric> = new Map(
  METRICS.flatMap((m) => [m.name, ...(m.aliases ?? [])].map((name) => [name, m] as const)),
);

function seconds(v: number | null | undefined, missing: string): MetricReading {
  return v === null || v === undefined ? { value: null, missing } : { value: v * 1000 };
}

/** Run-wide storm metrics: `storm.<field>`. */
const STORM_METRICS: Record<string, Omit<GateMetric, 'name'>> = {
  losses: {
    kind: 'count',
    read: ({ storm }) =>
      storm ? { value: storm.losses } : { value: null, missing: 'no storm data' },
  },
  peak: {
    kind: 'count',
    read: ({ storm }) =>
      storm ? { value: storm.peakAttemptsPerSec } : { value: null, missing: 'no storm data' },
  },
  attemptsPerDevice: {
    kind: 'ratio',
    read: ({ storm }) =>
      storm?.attemptsPerDevice == null
        ? { value: null, missing: 'no losses' }
        : { value: storm.attemptsPerDevice },
  },
  notBack: {
    kind: 'count',
    read: ({ storm }) =>
      storm ? { value: storm.notBack } : { value: null, missing: 'no storm data' },
  },
  t50: {
    kind: 'duration',
    read: ({ storm }) => seconds(storm?.lossToBack.p50, 'no losses, or too few back'),
  },
  t99: {
    kind: 'duration',
    read: ({ storm }) => seconds(storm?.lossToBack.p99, 'no losses, or too few back'),
  },
  t100: {
    kind: 'duration',
    read: ({ storm }) => seconds(storm?.lossToBack.p100, 'no losses, or some never back'),
  },
};

type FaultFigures = NonNullable<GateInputs['faults']>[number];
/** Per-fault metrics: `fault(<label>).<field>`. */
const FAULT_FIELDS: Record<
  string,
  { kind: Gate['kind']; read: (f: FaultFigures, inputs: GateInputs) => MetricReading }
> = {
  affected: { kind: 'count', read: (f) => ({ value: f.affected }) },
  /** Affected devices as a share of the devices requested. */
  share: {
    kind: 'percent',
    read: (f, { connections }) =>
      ratio(f.affected, connections.requested, 'no connections requested'),
  },
  peak: { kind: 'count', read: (f) => ({ value: f.peakAttemptsPerSec }) },
  lost: { kind: 'count', read: (f) => ({ value: f.lostMessages }) },
  attemptsPerDevice: {
    kind: 'ratio',
    read: (f) =>
      f.attemptsPerDevice === null
        ? { value: null, missing: 'no devices affected' }
        : { value: f.attemptsPerDevice },
  },
  t50: { kind: 'duration', read: (f) => seconds(f.reconnected.p50, 'too few devices back') },
  t99: { kind: 'duration', read: (f) => seconds(f.reconnected.p99, 'too few devices back') },
  t100: { kind: 'duration', read: (f) => seconds(f.reconnected.p100, 'some devices never back') },
  // Never settling is the worst answer, not a missing one: it reads as infinity.
  skewSettled: {
    kind: 'duration',
    read: (f) =>
      f.skewSettledAfterS === undefined
        ? { value: null, missing: 'not a scale-up' }
        : {
            value:
              f.skewSettledAfterS === null ? Number.POSITIVE_INFINITY : f.skewSettledAfterS * 1000,
          },
  },
};

const REGION = '[a-z][a-z0-9-]{0,23}';

/**
 * Finds a metric by name: the fixed table, then the families whose names carry
 * a parameter — `<stat>(<series>@<region>)`, `storm.<field>`, `nodes.crashed[@region]`,
 * `skew.max@<region>`, `fault(<label>).<field>`.
 */
function findMetric(name: string): GateMetric | undefined {
  const fixed = metricsByName.get(name);
  if (fixed) return fixed;
  let m = new RegExp(`^([\\w.]+)\\((\\w+)@(${REGION})\\)$`).exec(name);
  if (m) {
    const base = metricsByName.get(`${m[1]}(${m[2]})`);
    if (!base) return undefined;
    const key = `${m[2]}@${m[3]}`;
    return {
      name,
      kind: 'duration',
      read(inputs) {
        const summary = inputs.latency[key];
        if (!summary || summary.count === 0) return { value: null, missing: 'no samples' };
        return { value: summary[base.name.slice(0, base.name.indexOf('(')) as LatencyStat] };
      },
    };
  }
  m = /^storm\.(\w+)$/.exec(name);
  if (m?.[1] && STORM_METRICS[m[1]]) return { name, ...STORM_METRICS[m[1]]! };
  m = new RegExp(`^nodes\\.crashed(?:@(${REGION}))?$`).exec(name);
  if (m) {
    const region = m[1];
    return {
      name,
      kind: 'count',
      read: ({ crashed, regions }) => {
        if (region === undefined) return { value: crashed ?? 0 };
        const r = regions?.[region];
        return r ? { value: r.crashed } : { value: null, missing: `no region ${region}` };
      },
    };
  }
  m = new RegExp(`^skew\\.(max|final)@(${REGION})$`).exec(name);
  if (m) {
    const [, which = 'max', region = ''] = m;
    return {
      name,
      kind: 'ratio',
      read: ({ regions }) => {
        const v = regions?.[region]?.skew[which as 'max' | 'final'];
        return v == null ? { value: null, missing: 'no per-node samples' } : { value: v };
      },
    };
  }
  m = /^fault\(([^()\s]+)\)\.(\w+)$/.exec(name);
  if (m?.[2] && FAULT_FIELDS[m[2]]) {
    const [, label = '', field = ''] = m;
    const def = FAULT_FIELDS[field]!;
    return {
      name,
      kind: def.kind,
      read: (inputs) => {
        const f = inputs.faults?.find((x) => x.label === label);
        return f
          ? def.read(f, inputs)
          : { value: null, missing: `no fault labelled ${label} fired` };
      },
    };
  }
  return undefined;
}

/** The metric names a gate may use, latency ones folded into one `<stat>(<series>)` pattern. */
export function describeGateMetrics(): string {
  const plain = METRICS.filter((m) => !m.name.includes('(')).map((m) => m.name);
  const aliasesOf = (stat: string): string[] =>
    Object.keys(LATENCY_STAT_ALIASES).filter((alias) => LATENCY_STAT_ALIASES[alias] === stat);
  const stats = LATENCY_STATS.flatMap((stat) => [stat, ...aliasesOf(stat)]).join('|');
  return (
    `${plain.join(', ')}, <stat>(<series>) with stat ${stats} and series ${LATENCY_SERIES.join('|')} ` +
    `(optionally <series>@<region>), storm.${Object.keys(STORM_METRICS).join('|')}, ` +
    `nodes.crashed[@<region>], skew.max|final@<region>, fault(<label>).${Object.keys(FAULT_FIELDS).join('|')}`
  );
}

const OPS: readonly GateOp[] = ['<', '<=', '>', '>='];

function isGateOp(op: string): op is GateOp {
  return (OPS as readonly string[]).includes(op);
}

/** A more helpful reason than "unknown metric" when the shape is `<stat>(<series>)`. */
function unknownMetricProblem(metric: string): string {
  const m = /^([\w.]+)\((\w*)\)$/.exec(metric);
  if (m) {
    const [, stat = '', series = ''] = m;
    const statKnown =
      (LATENCY_STATS as readonly string[]).includes(stat) || stat in LATENCY_STAT_ALIASES;
    const seriesKnown = (LATENCY_SERIES as readonly string[]).includes(series);
    if (statKnown && !seriesKnown) return `unknown latency series "${series}"`;
    if (!statKnown && seriesKnown) return `unknown latency statistic "${stat}"`;
  }
  return `unknown metric "${metric}"`;
}

/** Rounds away binary noise such as 0.9990000000000001 from `99.9 / 100`. */
function clean(x: number): number {
  return Number(x.toPrecision(12));
}

/** Parses the threshold for `metric`, or returns what is wrong with it. */
function parseThreshold(text: string, metric: GateMetric): number | string {
  if (text === '') return 'missing threshold after the operator';
  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z%]*)$/.exec(text);
  if (!m) return `bad threshold "${text}"; expected a number >= 0 with an optional unit`;
  const [, digits = '', unit = ''] = m;
  const value = Number(digits);
  if (metric.kind === 'percent') {
    if (unit === '%') {
      if (value > 100) return `${text} is over 100%`;
      return clean(value / 100);
    }
    if (unit !== '') {
      return `${metric.name} is a percentage, not a "${unit}" value; write e.g. 99.9% or 0.999`;
    }
    if (value > 1) return `${text} is not a fraction in [0, 1]; write ${text}% for a percentage`;
    return value;
  }
  if (metric.kind === 'ratio' || metric.kind === 'count') {
    if (unit !== '') return `${metric.name} is a plain number such as 1.5, not a "${unit}" value`;
    return value;
  }
  if (unit === '') return value;
  if (!['us', 'ms', 's', 'm'].includes(unit)) {
    return `bad unit "${unit}" in "${text}"; ${metric.name} is a duration: use us, ms, s or m`;
  }
  return parseDurationMs(`${digits}${unit}`, metric.name);
}

/** Parses one expression, or returns the problem (without the known-metrics suffix). */
function parseGateOrProblem(expr: string): Gate | string {
  const text = expr.trim();
  const quoted = `gate "${text}"`;
  const opMatch = /[<>=!]+/.exec(text);
  if (!opMatch) return `${quoted}: missing operator; use <, <=, > or >=`;
  const op = opMatch[0];
  if (!isGateOp(op)) return `${quoted}: bad operator "${op}"; use <, <=, > or >=`;
  const metricName = text.slice(0, opMatch.index).replace(/\s+/g, '');
  if (metricName === '') return `${quoted}: missing metric before "${op}"`;
  const metric = findMetric(metricName);
  if (!metric) return `${quoted}: ${unknownMetricProblem(metricName)}`;
  const threshold = parseThreshold(text.slice(opMatch.index + op.length).trim(), metric);
  if (typeof threshold === 'string') return `${quoted}: ${threshold}`;
  if (metric.statistical && threshold >= 1 && (op === '>=' || op === '>')) {
    // No finite sample bounds a failure rate at 0: the gate could never pass.
    return `${quoted}: ${metric.name} ${op} 100% can never be shown by sampling; write e.g. ${metric.name} >= 99.999%`;
  }
  return { expr: text, metric: metric.name, op, threshold, kind: metric.kind };
}

function knownMetricsSuffix(): string {
  return `known metrics: ${describeGateMetrics()}`;
}

/**
 * Parses one gate expression such as `p99(push) < 50ms` or `delivery >= 99.999%`.
 * Throws `PB_BAD_GATE` naming the expression, what is wrong and the known metrics.
 */
export function parseGate(expr: string): Gate {
  const parsed = parseGateOrProblem(expr);
  if (typeof parsed !== 'string') return parsed;
  const message = `${parsed}; ${knownMetricsSuffix()}`;
  throw new PushbenchError('PB_BAD_GATE', message, [message]);
}

/**
 * Parses every expression. When any is bad, throws one `PB_BAD_GATE` whose `problems`
 * has one self-contained line per bad expression (in input order).
 */
export function parseGates(exprs: readonly string[]): Gate[] {
  const gates: Gate[] = [];
  const problems: string[] = [];
  for (const expr of exprs) {
    const parsed = parseGateOrProblem(expr);
    if (typeof parsed === 'string') problems.push(parsed);
    else gates.push(parsed);
  }
  if (problems.length > 0) {
    const suffix = knownMetricsSuffix();
    const lead = problems.length === 1 ? '' : `${problems.length} bad gates: `;
    throw new PushbenchError(
      'PB_BAD_GATE',
      `${lead}${problems.join('; ')}; ${suffix}`,
      problems.map((p) => `${p}; ${suffix}`),
    );
  }
  return gates;
}

/**
 * Formats a fraction as a percentage with two significant digits of its distance from
 * 0% or 100%, so 0.99998 reads `99.998%`, not `100.0%`.
 */
function formatPercent(fraction: number, significant = 2): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const pct = fraction * 100;
  const edge = Math.min(Math.abs(pct), Math.abs(100 - pct));
  const decimals =
    edge === 0 ? 0 : Math.min(10, Math.max(0, Math.ceil(-Math.log10(edge)) + significant - 1));
  const fixed = pct.toFixed(decimals);
  return `${fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed}%`;
}

/** Formats a duration threshold as the user most likely wrote it: `50ms`, `1s`, `250us`. */
function formatThresholdMs(ms: number): string {
  if (ms > 0 && ms < 1) return `${clean(ms * 1000)}us`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${clean(ms)}ms`;
}

function formatValue(kind: Gate['kind'], value: number, forThreshold: boolean): string {
  if (kind === 'percent') return formatPercent(value);
  if (kind === 'ratio') return forThreshold ? String(clean(value)) : value.toFixed(2);
  if (kind === 'count') return String(clean(value));
  return forThreshold ? formatThresholdMs(value) : formatMs(value);
}

function compare(actual: number, op: GateOp, threshold: number): boolean {
  switch (op) {
    case '<':
      return actual < threshold;
    case '<=':
      return actual <= threshold;
    case '>':
      return actual > threshold;
    case '>=':
      return actual >= threshold;
  }
}

type ResultBase = Pick<GateResult, 'expr' | 'metric' | 'op' | 'threshold'>;

function result(
  base: ResultBase,
  actual: number | null,
  actualText: string,
  verdict: GateVerdict,
  detail: string,
  needed?: number,
): GateResult {
  const r: GateResult = { ...base, actual, actualText, verdict, pass: verdict === 'pass', detail };
  if (needed !== undefined) r.needed = needed;
  return r;
}

/**
 * A `>=`/`>` gate on a counted proportion. Pass needs the upper confidence bound on the
 * failure rate within the allowed rate; fail needs the observed rate already beyond it;
 * anything between is inconclusive, with the trial count that would settle it.
 */
function evaluateStatistical(
  gate: Gate,
  base: ResultBase,
  reading: MetricReading,
  sample: BinomialSample,
  confidence: number,
): GateResult {
  const strict = gate.op === '>';
  const maxFailureRate = clean(1 - gate.threshold);
  const thresholdText = formatPercent(gate.threshold);
  const confidenceText = formatPercent(confidence);
  const actual = reading.value;
  const actualText = actual === null ? 'n/a' : formatPercent(actual);
  const { failures, trials } = sample;
  const claim = `${thresholdText} at ${confidenceText} confidence`;

  if (trials <= 0) {
    const needed = requiredTrials(0, maxFailureRate, confidence);
    const detail = `${reading.missing ?? 'no trials'}: ${claim} needs >= ${formatCount(needed)}`;
    return result(base, actual, actualText, 'inconclusive', detail, needed);
  }

  const counted = `${formatCount(failures)} ${failures === 1 ? 'loss' : 'losses'} in ${formatCount(trials)} accepted`;
  const upper = clopperPearsonUpper(failures, trials, confidence);
  if (strict ? upper < maxFailureRate : upper <= maxFailureRate) {
    const detail = `${counted}: loss rate <= ${formatPercent(upper, 3)} at ${confidenceText} confidence, within ${formatPercent(maxFailureRate)}`;
    return result(base, actual, actualText, 'pass', detail);
  }
  const observed = failures / trials;
  if (strict ? observed >= maxFailureRate : observed > maxFailureRate) {
    const detail = `${counted}: observed loss rate ${formatPercent(observed)} already exceeds ${formatPercent(maxFailureRate)}`;
    return result(base, actual, actualText, 'fail', detail);
  }
  const needed = requiredTrials(failures, maxFailureRate, confidence);
  const more = failures === 0 ? '' : ' with no further losses';
  const detail = `${counted}: ${claim} needs >= ${formatCount(needed)}${more}`;
  return result(base, actual, actualText, 'inconclusive', detail, needed);
}

/**
 * Evaluates one gate against a run's figures. `confidence` (default 0.95) applies to
 * statistical gates only. Throws `PB_BAD_GATE` if the gate names a metric not in the table.
 */
export function evaluateGate(gate: Gate, inputs: GateInputs, confidence = 0.95): GateResult {
  const metric = findMetric(gate.metric);
  if (!metric) {
    throw new PushbenchError(
      'PB_BAD_GATE',
      `gate "${gate.expr}": ${unknownMetricProblem(gate.metric)}; ${knownMetricsSuffix()}`,
    );
  }
  const base: ResultBase = {
    expr: gate.expr,
    metric: gate.metric,
    op: gate.op,
    threshold: gate.threshold,
  };
  const reading = metric.read(inputs);
  if (reading.sample && (gate.op === '>=' || gate.op === '>')) {
    return evaluateStatistical(gate, base, reading, reading.sample, confidence);
  }
  if (reading.value === null) {
    return result(base, null, 'n/a', 'inconclusive', reading.missing ?? 'no data');
  }
  const actualText = formatValue(gate.kind, reading.value, false);
  const thresholdText = formatValue(gate.kind, gate.threshold, true);
  return compare(reading.value, gate.op, gate.threshold)
    ? result(base, reading.value, actualText, 'pass', `${actualText} ${gate.op} ${thresholdText}`)
    : result(
        base,
        reading.value,
        actualText,
        'fail',
        `${actualText} is not ${gate.op} ${thresholdText}`,
      );
}

/** Evaluates every gate at 95% confidence, in order. */
export function evaluateGates(gates: readonly Gate[], inputs: GateInputs): GateResult[] {
  return gates.map((gate) => evaluateGate(gate, inputs));
}

const verdictRank: Record<GateVerdict, number> = { pass: 0, inconclusive: 1, fail: 2 };

/** The verdict of a set of gates: any fail, else any inconclusive, else pass (also for none). */
export function worstVerdict(results: readonly GateResult[]): GateVerdict {
  let worst: GateVerdict = 'pass';
  for (const r of results) {
    if (verdictRank[r.verdict] > verdictRank[worst]) worst = r.verdict;
  }
  return worst;
}

/**
 * Checks that gates naming a fault label or a region name ones the scenario
 * has, so a typo fails before the run (exit 2) instead of ending inconclusive.
 * Throws `PB_BAD_GATE` with one line per bad gate.
 */
export function checkGateTargets(
  gates: readonly Gate[],
  known: { labels: readonly string[]; regions: readonly string[] },
): void {
  const problems: string[] = [];
  for (const g of gates) {
    const label = /^fault\(([^()\s]+)\)\./.exec(g.metric)?.[1];
    if (label !== undefined && !known.labels.includes(label)) {
      const usable = known.labels.filter((l) => /^[^()\s<>=!]+$/.test(l));
      problems.push(
        `gate "${g.expr}": no timeline action is labelled "${label}" (labels a gate can name: ${usable.join(', ') || 'none; give actions a label without spaces'})`,
      );
    }
    const region = /@([a-z][a-z0-9-]*)\)?$/.exec(g.metric)?.[1];
    if (region !== undefined && !known.regions.includes(region)) {
      problems.push(
        `gate "${g.expr}": no region "${region}" (regions: ${known.regions.join(', ')})`,
      );
    }
  }
  if (problems.length > 0) {
    throw new PushbenchError('PB_BAD_GATE', problems.join('; '), problems);
  }
}
