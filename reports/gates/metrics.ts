/**
 * The metric table: every name a gate can use, as one row per family. A row holds the
 * family's name pattern, how a name in it reads the run's figures, and the entry that
 * the "known metrics" help text lists. A fixed metric (`delivery`) is a family of one
 * name; the others carry a parameter: a latency statistic and series, a region, a storm
 * field, a fault label. Parsing, help text, evaluation and the scenario checks all look
 * names up here, so adding a row is the whole of adding a metric.
 */

import type { GateInputs, GateKind } from './types.js';

/** The latency series a run records, in milliseconds. */
export const LATENCY_SERIES = [
  'push',
  'connect',
  'register',
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

/** Counts behind a proportion: `failures` out of `trials` (e.g. messages lost out of accepted). */
export interface BinomialSample {
  failures: number;
  trials: number;
}

/** What reading a metric from {@link GateInputs} gives. */
export interface MetricReading {
  /** Fraction or milliseconds; null when there is nothing to measure. */
  value: number | null;
  /** Why `value` is null, e.g. "no samples". */
  missing?: string;
  /** Present for statistical metrics: the counts the value was estimated from. */
  sample?: BinomialSample;
}

/** One metric a name resolved to: what the parser and the evaluator need of it. */
export interface GateMetric {
  /** Canonical name, as it appears in `Gate.metric`. */
  name: string;
  kind: GateKind;
  /**
   * True when the value is a success proportion estimated from counted trials: `>=` and
   * `>` gates on it are decided by a confidence bound, not the point estimate.
   */
  statistical: boolean;
  /** The fault label and region the name points at, to check against the scenario. */
  refs: { label?: string; region?: string };
  /** Set for `<stat>(<metric>)` over repeats: evaluated once over every repeat's inputs. */
  repeatStat?: RepeatStat;
  read(inputs: GateInputs): MetricReading;
}

/** What a matching name carries: its parameters, kind, and canonical name when it differs. */
interface Binding<P> {
  params: P;
  kind: GateKind;
  name?: string;
  refs?: GateMetric['refs'];
}

/** A row of the metric table, before its parameter type is erased by {@link family}. */
interface FamilyRow<P> {
  /** How "known metrics" lists the family. */
  description: string;
  /** Matches a whole, whitespace-free name; its groups are what {@link bind} reads. */
  pattern: RegExp;
  bind(match: RegExpExecArray): Binding<P>;
  read(inputs: GateInputs, params: P): MetricReading;
  statistical?: boolean;
}

/** A row of the metric table. */
interface MetricFamily {
  description: string;
  /** The metric `name` denotes, or undefined when the name is not in this family. */
  resolve(name: string): GateMetric | undefined;
}

function family<P>(row: FamilyRow<P>): MetricFamily {
  return {
    description: row.description,
    resolve(name) {
      const match = row.pattern.exec(name);
      if (!match) return undefined;
      const { params, kind, name: canonical = name, refs = {} } = row.bind(match);
      return {
        name: canonical,
        kind,
        statistical: row.statistical ?? false,
        refs,
        read: (inputs) => row.read(inputs, params),
      };
    },
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A family of one name. */
function fixed(
  name: string,
  kind: GateKind,
  read: (inputs: GateInputs) => MetricReading,
  statistical = false,
): MetricFamily {
  return family<undefined>({
    description: name,
    pattern: new RegExp(`^${escapeRegExp(name)}$`),
    bind: () => ({ params: undefined, kind }),
    read,
    statistical,
  });
}

/** A field of a family such as `storm.<field>`: its kind and how it reads `T`. */
interface Field<T> {
  kind: GateKind;
  read(from: T, inputs: GateInputs): MetricReading;
}

/** The field names of a table as a regular-expression alternation. */
function alternation(table: Readonly<Record<string, unknown>>): string {
  return Object.keys(table).map(escapeRegExp).join('|');
}

function ratio(numerator: number, denominator: number, missing: string): MetricReading {
  return denominator > 0 ? { value: numerator / denominator } : { value: null, missing };
}

function seconds(v: number | null | undefined, missing: string): MetricReading {
  return v === null || v === undefined ? { value: null, missing } : { value: v * 1000 };
}

function present(v: number | null | undefined, missing: string): MetricReading {
  return v === null || v === undefined ? { value: null, missing } : { value: v };
}

const NO_REQUESTS = 'no connections requested';
const NO_NODE_SAMPLES = 'no per-node samples';
const NO_STORM = 'no storm data';

/** Run-wide storm metrics: `storm.<field>`. */
const STORM_FIELDS: Readonly<Record<string, Field<GateInputs['storm']>>> = {
  losses: { kind: 'count', read: (storm) => present(storm?.losses, NO_STORM) },
  peak: { kind: 'count', read: (storm) => present(storm?.peakAttemptsPerSec, NO_STORM) },
  attemptsPerDevice: {
    kind: 'ratio',
    read: (storm) => present(storm?.attemptsPerDevice, 'no losses'),
  },
  notBack: { kind: 'count', read: (storm) => present(storm?.notBack, NO_STORM) },
  t50: { kind: 'duration', read: (s) => seconds(s?.lossToBack.p50, 'no losses, or too few back') },
  t99: { kind: 'duration', read: (s) => seconds(s?.lossToBack.p99, 'no losses, or too few back') },
  t100: {
    kind: 'duration',
    read: (s) => seconds(s?.lossToBack.p100, 'no losses, or some never back'),
  },
};

type FaultFigures = NonNullable<GateInputs['faults']>[number];

/** Per-fault metrics: `fault(<label>).<field>`. */
const FAULT_FIELDS: Readonly<Record<string, Field<FaultFigures>>> = {
  affected: { kind: 'count', read: (f) => ({ value: f.affected }) },
  /** Affected devices as a share of the devices requested. */
  share: {
    kind: 'percent',
    read: (f, { connections }) => ratio(f.affected, connections.requested, NO_REQUESTS),
  },
  peak: { kind: 'count', read: (f) => ({ value: f.peakAttemptsPerSec }) },
  /** The peak as a share of the affected devices: a herd's size whatever the fleet's. */
  peakShare: {
    kind: 'percent',
    read: (f) => ratio(f.peakAttemptsPerSec, f.affected, 'no devices affected'),
  },
  lost: { kind: 'count', read: (f) => ({ value: f.lostMessages }) },
  attemptsPerDevice: {
    kind: 'ratio',
    read: (f) => present(f.attemptsPerDevice, 'no devices affected'),
  },
  t50: { kind: 'duration', read: (f) => seconds(f.reconnected.p50, 'too few devices back') },
  t99: { kind: 'duration', read: (f) => seconds(f.reconnected.p99, 'too few devices back') },
  t100: { kind: 'duration', read: (f) => seconds(f.reconnected.p100, 'some devices never back') },
  /** From the fault until 50 / 99 % of its devices saw their connections lost. */
  noticed50: { kind: 'duration', read: (f) => seconds(f.noticed?.p50, 'no devices affected') },
  noticed99: { kind: 'duration', read: (f) => seconds(f.noticed?.p99, 'no devices affected') },
  notFound: {
    kind: 'count',
    read: (f) => present(f.notFoundAfter?.count, 'not a datastore-restart'),
  },
  notFoundFor: {
    kind: 'duration',
    read: (f) => seconds(f.notFoundAfter?.forS, 'not a datastore-restart'),
  },
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

/** The windows of a lasting fault a gate can read: before it, while it stood, and their ratio. */
type FaultWindowName = 'before' | 'during' | 'rise';

/** A region name as scenarios allow it. */
const REGION = '[a-z][a-z0-9-]{0,23}';

/** A fault label a gate can name: no parentheses or whitespace. */
const LABEL = '[^()\\s]+';

const STAT_SPELLINGS = [...LATENCY_STATS, ...Object.keys(LATENCY_STAT_ALIASES)];

function canonicalStat(spelling: string): LatencyStat {
  return LATENCY_STAT_ALIASES[spelling] ?? (spelling as LatencyStat);
}

interface LatencyParams {
  stat: LatencyStat;
  series: LatencySeries;
  region: string | undefined;
}

/**
 * `<stat>(<series>)`, `<stat>(<series>@<region>)`, and `reconnect.<stat>`, which reads
 * better than `p99(reconnect)` for the time a device takes to come back. A regional name
 * keeps the spelling it was written with (`p99.9(push@eu)`), as it always has.
 */
const latencyFamily = family<LatencyParams>({
  description:
    `<stat>(<series>) with stat ${LATENCY_STATS.flatMap((stat) => [stat, ...aliasesOf(stat)]).join('|')} ` +
    `and series ${LATENCY_SERIES.join('|')} (optionally <series>@<region>)`,
  pattern: new RegExp(
    `^(?:(${STAT_SPELLINGS.map(escapeRegExp).join('|')})\\((${LATENCY_SERIES.join('|')})(?:@(${REGION}))?\\)` +
      `|reconnect\\.(${LATENCY_STATS.join('|')}))$`,
  ),
  bind([written, spelling, series, region, reconnectStat]) {
    if (reconnectStat !== undefined) {
      const stat = reconnectStat as LatencyStat;
      return {
        params: { stat, series: 'reconnect', region },
        kind: 'duration',
        name: `${stat}(reconnect)`,
      };
    }
    const stat = canonicalStat(spelling ?? '');
    const params = { stat, series: series as LatencySeries, region };
    if (region !== undefined) return { params, kind: 'duration', name: written, refs: { region } };
    return { params, kind: 'duration', name: `${stat}(${series})` };
  },
  read(inputs, { stat, series, region }) {
    const summary = inputs.latency[region === undefined ? series : `${series}@${region}`];
    if (!summary || summary.count === 0) return { value: null, missing: 'no samples' };
    return { value: summary[stat] };
  },
});

function aliasesOf(stat: LatencyStat): string[] {
  return Object.keys(LATENCY_STAT_ALIASES).filter((alias) => LATENCY_STAT_ALIASES[alias] === stat);
}

/**
 * Every metric a gate can name, in the order the help text lists them. The patterns do
 * not overlap, so the order does not change what a name means.
 */
const METRIC_FAMILIES: readonly MetricFamily[] = [
  fixed(
    'delivery',
    'percent',
    ({ delivery }) => {
      const sample = { failures: delivery.lost, trials: delivery.accepted };
      if (delivery.accepted <= 0) return { value: null, missing: 'no messages accepted', sample };
      return { value: delivery.delivered / delivery.accepted, sample };
    },
    true,
  ),
  fixed('connections.held', 'percent', ({ connections: c }) =>
    ratio(c.heldAtEnd, c.requested, NO_REQUESTS),
  ),
  fixed('connections.heldAtServer', 'percent', ({ connections: c }) =>
    c.heldAtServer == null
      ? { value: null, missing: "the nodes' counts were not read" }
      : ratio(c.heldAtServer, c.requested, NO_REQUESTS),
  ),
  fixed('connections.established', 'percent', ({ connections: c }) =>
    ratio(c.established, c.requested, NO_REQUESTS),
  ),
  fixed('skew.max', 'ratio', ({ skew }) => present(skew?.max, NO_NODE_SAMPLES)),
  fixed('skew.final', 'ratio', ({ skew }) => present(skew?.final, NO_NODE_SAMPLES)),
  latencyFamily,
  family<Field<GateInputs['storm']>>({
    description: `storm.${Object.keys(STORM_FIELDS).join('|')}`,
    pattern: new RegExp(`^storm\\.(${alternation(STORM_FIELDS)})$`),
    bind: ([, name = '']) => {
      const field = STORM_FIELDS[name]!;
      return { params: field, kind: field.kind };
    },
    read: (inputs, field) => field.read(inputs.storm, inputs),
  }),
  family<string | undefined>({
    description: 'nodes.crashed[@<region>]',
    pattern: new RegExp(`^nodes\\.crashed(?:@(${REGION}))?$`),
    bind: ([, region]) => ({ params: region, kind: 'count', refs: region ? { region } : {} }),
    read: ({ crashed, regions }, region) => {
      if (region === undefined) return { value: crashed ?? 0 };
      const r = regions?.[region];
      return r ? { value: r.crashed } : { value: null, missing: `no region ${region}` };
    },
  }),
  family<{ which: 'max' | 'final'; region: string }>({
    description: 'skew.max|final@<region>',
    pattern: new RegExp(`^skew\\.(max|final)@(${REGION})$`),
    bind: ([, which, region = '']) => ({
      params: { which: which as 'max' | 'final', region },
      kind: 'ratio',
      refs: { region },
    }),
    read: ({ regions }, { which, region }) =>
      present(regions?.[region]?.skew[which], NO_NODE_SAMPLES),
  }),
  family<{ label: string; field: Field<FaultFigures> }>({
    description: `fault(<label>).${Object.keys(FAULT_FIELDS).join('|')}`,
    pattern: new RegExp(`^fault\\((${LABEL})\\)\\.(${alternation(FAULT_FIELDS)})$`),
    bind: ([, label = '', name = '']) => {
      const field = FAULT_FIELDS[name]!;
      return { params: { label, field }, kind: field.kind, refs: { label } };
    },
    read: (inputs, { label, field }) => {
      const f = inputs.faults?.find((x) => x.label === label);
      return f
        ? field.read(f, inputs)
        : { value: null, missing: `no fault labelled ${label} fired` };
    },
  }),
  family<{ label: string; window: FaultWindowName; stat: LatencyStat; series: LatencySeries }>({
    // Latency as long before a lasting fault as it stood, while it stood, and during / before.
    description: 'fault(<label>).before|during|rise.<stat>(<series>)',
    pattern: new RegExp(
      `^fault\\((${LABEL})\\)\\.(before|during|rise)\\.(${STAT_SPELLINGS.map(escapeRegExp).join('|')})\\((${LATENCY_SERIES.join('|')})\\)$`,
    ),
    bind: ([, label = '', window, spelling = '', series]) => {
      const stat = canonicalStat(spelling);
      return {
        params: {
          label,
          window: window as FaultWindowName,
          stat,
          series: series as LatencySeries,
        },
        kind: window === 'rise' ? 'ratio' : 'duration',
        name: `fault(${label}).${window}.${stat}(${series})`,
        refs: { label },
      };
    },
    read: ({ faults }, { label, window, stat, series }) => {
      const f = faults?.find((x) => x.label === label);
      if (!f) return { value: null, missing: `no fault labelled ${label} fired` };
      if (!f.windows)
        return {
          value: null,
          missing: 'the fault did not last, or no interval fell before or in it',
        };
      const before = f.windows.before.latency[series];
      const during = f.windows.during.latency[series];
      if (window !== 'during' && !before?.count)
        return { value: null, missing: 'no samples before the fault' };
      if (window !== 'before' && !during?.count)
        return { value: null, missing: 'no samples while the fault stood' };
      if (window === 'before') return { value: before![stat] };
      if (window === 'during') return { value: during![stat] };
      return before![stat] > 0
        ? { value: during![stat] / before![stat] }
        : { value: null, missing: `${stat}(${series}) before the fault was 0` };
    },
  }),
];

/** Statistics a gate can take of a metric over repeated runs (`--repeat N`). */
export const REPEAT_STATS = ['median', 'mean', 'min', 'max'] as const;

/** One of {@link REPEAT_STATS}. */
export type RepeatStat = (typeof REPEAT_STATS)[number];

/** `stat` of the values, null when there are none. */
export function repeatStatistic(stat: RepeatStat, values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  switch (stat) {
    case 'min':
      return sorted[0]!;
    case 'max':
      return sorted[sorted.length - 1]!;
    case 'mean':
      return values.reduce((a, b) => a + b, 0) / values.length;
    case 'median': {
      const mid = sorted.length >> 1;
      return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    }
  }
}

/** A family's metric by name, without the repeat wrapper. */
function findPlainMetric(name: string): GateMetric | undefined {
  for (const row of METRIC_FAMILIES) {
    const metric = row.resolve(name);
    if (metric) return metric;
  }
  return undefined;
}

/**
 * The metric a whitespace-free name denotes, or undefined when no family has it. A name
 * `<stat>(<metric>)` with stat median, mean, min or max takes that statistic of the metric
 * over the repeats of a `--repeat` run (of a single run, its one value). Latency names win
 * where both read: `max(push)` is the push series' maximum.
 */
export function findMetric(name: string): GateMetric | undefined {
  const plain = findPlainMetric(name);
  if (plain) return plain;
  const m = /^(median|mean|min|max)\((.+)\)$/.exec(name);
  const inner = m ? findPlainMetric(m[2]!) : undefined;
  if (!m || !inner) return undefined;
  const stat = m[1] as RepeatStat;
  return {
    name: `${stat}(${inner.name})`,
    kind: inner.kind,
    // A statistic of point values: decided on its value, not a confidence bound.
    statistical: false,
    refs: inner.refs,
    repeatStat: stat,
    read(inputs) {
      const each = inputs.repeats ?? [inputs];
      const values: number[] = [];
      for (const r of each) {
        const v = inner.read(r).value;
        if (v !== null) values.push(v);
      }
      const value = repeatStatistic(stat, values);
      return value === null
        ? { value: null, missing: `no repeat measured ${inner.name}` }
        : { value };
    },
  };
}

/** The metric names a gate may use: each family's entry, in table order. */
export function describeGateMetrics(): string {
  return [
    ...METRIC_FAMILIES.map((row) => row.description),
    'median|mean|min|max(<metric>) over --repeat runs',
  ].join(', ');
}

/** The suffix every "bad gate" message ends with. */
export function knownMetricsSuffix(): string {
  return `known metrics: ${describeGateMetrics()}`;
}

/** A more helpful reason than "unknown metric" when the shape is `<stat>(<series>)`. */
export function unknownMetricProblem(metric: string): string {
  const m = /^([\w.]+)\((\w*)\)$/.exec(metric);
  if (m) {
    const [, stat = '', series = ''] = m;
    const statKnown = STAT_SPELLINGS.includes(stat);
    const seriesKnown = (LATENCY_SERIES as readonly string[]).includes(series);
    if (statKnown && !seriesKnown) return `unknown latency series "${series}"`;
    if (!statKnown && seriesKnown) return `unknown latency statistic "${stat}"`;
  }
  return `unknown metric "${metric}"`;
}
