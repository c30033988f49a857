/**
 * What the cost benchmarks share (`connect-cost.ts`, `floor.ts`, the
 * multi-process and bind benches): CPU readings, another process's from /proc
 * (through the harness's own reader) and this process's from
 * `process.cpuUsage()`, both in seconds of user + system time; and their
 * open-model pacing.
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

/**
 * Opens `total` things at `rate` per second as an open model (as a `hold` brings
 * devices): every 5 ms, `open(i)` for each index due by now, whether or not the
 * earlier ones have finished. Resolves once `done()` says so after each tick, or
 * `graceMs` after the last was due.
 */
export function openAtRate(
  total: number,
  rate: number,
  open: (i: number) => void,
  done: () => boolean,
  graceMs = 30_000,
): Promise<void> {
  const t0 = performance.now();
  let opened = 0;
  return new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
      while (opened < due) open(opened++);
      if (done() || performance.now() - t0 > (total / rate) * 1000 + graceMs) resolve();
      else setTimeout(tick, 5);
    };
    tick();
  });
}
