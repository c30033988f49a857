/**
 * The `gates` section: the expressions that decide the run's verdict. Each is
 * parsed here (by the parser reports/ installs), so a bad gate is listed with
 * the scenario's other problems in one pass (run/run.ts parses them again into
 * the evaluator's form, and checks the labels and regions they name). Gates have no fields, so no defaults
 * table of their own: their default, none, is the top level's (`gates: []` in
 * schema.ts).
 */
import type { Problems } from '../fields.js';

/**
 * Turns gate expressions into one problem line per bad one. The parser lives in
 * reports/ (the evaluator's module), which scenarios/ may not import: reports/
 * installs it here when it loads, so a run lists bad gates with the rest.
 */
type GateChecker = (exprs: readonly string[]) => string[];
let gateChecker: GateChecker | undefined;

/** Installs the gate parser's check (reports/gates.ts does, once). */
export function installGateChecker(check: GateChecker): void {
  gateChecker = check;
}

/** Validates `gates`: a list of strings, each a gate expression once the parser is installed. */
export function validateGates(p: Problems, input: unknown): string[] {
  if (input === undefined) return [];
  if (!Array.isArray(input) || !input.every((g) => typeof g === 'string')) {
    p.add('gates', 'must be a list of strings like "p99(push) < 50ms"');
    return [];
  }
  for (const line of gateChecker?.(input) ?? []) p.add('gates', line);
  return input;
}
