/**
 * The gate parser: text to {@link Gate}, as k6's `thresholds_parser.go` turns threshold
 * strings into an expression before anything evaluates them. Every problem is reported
 * as `PB_BAD_GATE` naming the expression, what is wrong and the known metrics.
 *
 * Grammar (whitespace anywhere between tokens):
 *
 *   gate      := metric op threshold
 *   metric    := a name in the metric table (./metrics.ts): `delivery`, `connections.held`,
 *                `skew.max`, `<stat>(<series>)`, `storm.<field>`, `fault(<label>).<field>`, …
 *   op        := `<` | `<=` | `>` | `>=`
 *   threshold := number unit?   percent metrics: `99.9%` or a fraction in [0, 1];
 *                               duration metrics: `us` | `ms` | `s` | `m`, bare = ms;
 *                               ratio and count metrics: a plain number
 */

import { PushbenchError } from '../../core/errors.js';
import { parseDurationMs } from '../../core/units.js';
import { clean } from './format.js';
import {
  findMetric,
  type GateMetric,
  knownMetricsSuffix,
  unknownMetricProblem,
} from './metrics.js';
import type { Gate, GateOp } from './types.js';

const OPS: readonly GateOp[] = ['<', '<=', '>', '>='];

function isGateOp(op: string): op is GateOp {
  return (OPS as readonly string[]).includes(op);
}

/** Parses a percent threshold (`99.9%` or a fraction), or returns what is wrong with it. */
function percentThreshold(text: string, value: number, unit: string, metric: GateMetric) {
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

/** Parses the threshold for `metric`, or returns what is wrong with it. */
function parseThreshold(text: string, metric: GateMetric): number | string {
  if (text === '') return 'missing threshold after the operator';
  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z%]*)$/.exec(text);
  if (!m) return `bad threshold "${text}"; expected a number >= 0 with an optional unit`;
  const [, digits = '', unit = ''] = m;
  const value = Number(digits);
  if (metric.kind === 'percent') return percentThreshold(text, value, unit, metric);
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
    const { label, region } = findMetric(g.metric)?.refs ?? {};
    if (label !== undefined && !known.labels.includes(label)) {
      // A label a gate can name: one the metric table accepts, with no operator character.
      const usable = known.labels.filter((l) => /^[^()\s<>=!]+$/.test(l));
      problems.push(
        `gate "${g.expr}": no timeline action is labelled "${label}" (labels a gate can name: ${usable.join(', ') || 'none; give actions a label without spaces'})`,
      );
    }
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
