/**
 * The `gates` section: the expressions that decide the run's verdict. Here
 * only their shape is checked; run/run.ts parses each expression before
 * anything starts. Gates have no fields, so no defaults table of their own:
 * their default, none, is the top level's (`gates: []` in schema.ts).
 */
import type { Problems } from '../fields.js';

/** Validates `gates`: a list of strings. */
export function validateGates(p: Problems, input: unknown): string[] {
  if (input === undefined) return [];
  if (!Array.isArray(input) || !input.every((g) => typeof g === 'string')) {
    p.add('gates', 'must be a list of strings like "p99(push) < 50ms"');
    return [];
  }
  return input;
}
