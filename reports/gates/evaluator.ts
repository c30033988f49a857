/**
 * The gate evaluator: a parsed {@link Gate} and a run's {@link GateInputs} to a
 * {@link GateResult}. It reads the metric through the metric table and never sees
 * the gate's text.
 *
 * A gate on a proportion measured by counting trials (delivery) with `>=` or `>` is
 * statistical: it passes only when the Clopper-Pearson upper bound on the failure rate
 * clears the threshold, and says `inconclusive` (with how many trials would be needed)
 * when the run was too small to tell.
 */

import { PushbenchError } from '../../core/errors.js';
import { formatCount } from '../../core/units.js';
import { clopperPearsonUpper, requiredTrials } from '../stats.js';
import { clean, formatPercent, formatValue } from './format.js';
import {
  type BinomialSample,
  findMetric,
  knownMetricsSuffix,
  type MetricReading,
  unknownMetricProblem,
} from './metrics.js';
import type { Gate, GateInputs, GateOp, GateResult, GateVerdict } from './types.js';

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
