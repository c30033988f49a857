/**
 * Gates: pass/fail conditions on a finished run, written the same way in scenario files
 * and on the CLI (`--gate "p99(push) < 50ms"`). This module is their public face; the
 * parts live in ./gates/, one concept each:
 *
 *   types.ts      what gates read (GateInputs), a parsed Gate, an evaluated GateResult
 *   metrics.ts    the metric table: one row per family of names (pattern, reader, help)
 *   parser.ts     text -> Gate, and the check of labels and regions against a scenario
 *   evaluator.ts  Gate + GateInputs -> GateResult, statistical gates included
 *   format.ts     how thresholds and measured values read
 */
import { PushbenchError } from '../core/errors.js';
import { installGateChecker } from '../scenarios/sections/gates.js';
import { parseGates } from './gates/parser.js';

export { evaluateGate, evaluateGates, worstVerdict } from './gates/evaluator.js';
export {
  describeGateMetrics,
  LATENCY_SERIES,
  LATENCY_STATS,
  type LatencySeries,
  type LatencyStat,
} from './gates/metrics.js';
export { checkGateTargets, parseGate, parseGates } from './gates/parser.js';

// Scenario validation lists bad gates with the scenario's other problems.
installGateChecker((exprs) => {
  try {
    parseGates(exprs);
    return [];
  } catch (err) {
    if (!(err instanceof PushbenchError)) throw err;
    return err.problems.length > 0 ? [...err.problems] : [err.message];
  }
});

export type {
  Gate,
  GateInputs,
  GateKind,
  GateOp,
  GateResult,
  GateVerdict,
  LatencySummary,
} from './gates/types.js';
