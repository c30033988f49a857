/**
 * CPU readings the cost benchmarks share (`connect-cost.ts`, `floor.ts`):
 * another process's from /proc (through the harness's own reader), this
 * process's from `process.cpuUsage()`, both in seconds of user + system time.
 */
import { readProcessStats } from '../core/process-stats.js';

/** CPU seconds (user + system) of process `pid` so far; 0 once it is gone. */
export function processCpuSeconds(pid: number): number {
  return readProcessStats(pid)?.cpuSeconds ?? 0;
}

/** CPU seconds (user + system) of this process so far, every thread included. */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
