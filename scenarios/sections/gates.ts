/**
 * The `gates` section: the expressions that decide the run's verdict. Each is
 * parsed here, so a bad gate is listed with the scenario's other problems in
 * one pass (run/run.ts parses them again into the evaluator's form, and checks
 * the labels and regions they name). Gates have no fields, so no defaults
 * table of their own: their default, none, is the top level's (`gates: []` in
 * schema.ts).
 */
import { PushbenchError } from '../../core/errors.js';
import { parseGates } from '../../reports/gates.js';
import type { Problems } from '../fields.js';

/** Validates `gates`: a list of strings, each a gate expression. */
export function validateGates(p: Problems, input: unknown): string[] {
  if (input === undefined) return [];
  if (!Array.isArray(input) || !input.every((g) => typeof g === 'string')) {
    p.add('gates', 'must be a list of strings like "p99(push) < 50ms"');
    return [];
  }
  try {
    parseGates(input);
  } catch (err) {
    if (!(err instanceof PushbenchError)) throw err;
    // One line per bad gate, each naming its expression.
    for (const line of err.problems.length > 0 ? err.problems : [err.message]) p.add('gates', line);
  }
  return input;
}
