/**
 * What a scenario file imports from `pushbench`. Kept free of runtime imports:
 * a scenario file outside a project that installs pushbench is given this
 * module for `pushbench` (see load.ts), whatever module system it compiles to.
 */
import type { ScenarioInput } from './types.js';

/** Declares a scenario with type checking; the value is validated when it is run. */
export function defineScenario(input: ScenarioInput): ScenarioInput {
  return input;
}
