/**
 * Where results go when the caller names no folder. `run`, `run --matrix` and
 * `capacity` all name their default folder here, so the time in a folder name
 * reads the same everywhere and sorts by start time.
 */
import { join } from 'node:path';

/**
 * The default results folder of something that started at `startedAt`:
 * `results/<label>-<UTC time>`, the time in ISO 8601 basic format to the
 * second (`results/smoke-20261205T101500Z`), so the folder name holds no `:`.
 */
export function defaultResultsDir(label: string, startedAt: Date): string {
  const time = startedAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return join('results', `${label}-${time}`);
}
