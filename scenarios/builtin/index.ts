import type { ScenarioInput } from '../schema.js';
import smoke from './smoke.js';

/** The scenarios shipped with pushbench, by name. */
export const builtinScenarios: Readonly<Record<string, ScenarioInput>> = {
  smoke,
};
