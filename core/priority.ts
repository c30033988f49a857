import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/**
 * Scheduling priority (niceness) on Linux. The nodes a run starts on this
 * machine run `topology.nodeNice` behind the run (topology/supervisor.ts); the
 * load generator's threads, where they may, run {@link GENERATOR_AHEAD} ahead
 * of it, and so of the harness's other processes too (the network fabric,
 * the hub, a managed Redis, HAProxy). On a box shared with all of them the
 * generator's clock is the measurement: a device thread that waits for a core
 * starts its attempts late and the run is INVALID for a lag the system under
 * test did not cause.
 */

/** Whether this process may lower a niceness (run something ahead): root on Linux. */
export function mayRaisePriority(): boolean {
  return process.platform === 'linux' && process.getuid?.() === 0;
}

/**
 * How far ahead of the run's own niceness the generator's device and
 * publisher threads run, as root, when the nodes run behind
 * (`topology.nodeNice` > 0). Measured on the 2-core AMD box (bench/RESULTS.md,
 * twelfth session), the same commands alternated: `balancer-scale-up` 3 of 3
 * valid against 1 of 3, the device threads' start lag p99 13-17 ms against
 * 19-73; node-kill's and drain's herds (peak attempts/s, t99, when the losses
 * were noticed) within the spread of the runs without it.
 */
export const GENERATOR_AHEAD = 5;

/**
 * Runs the calling thread `by` steps of niceness ahead of where it runs now
 * (capped at -20): only this thread, through its own id
 * (`/proc/thread-self`), so its process's other threads keep theirs. Returns
 * the niceness it runs at now, or undefined where it may not (not Linux, not
 * root, or `by` <= 0).
 */
export function runThisThreadAhead(by: number): number | undefined {
  if (!(by > 0) || !mayRaisePriority()) return undefined;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    const nice = Math.max(-20, getPriority(tid) - by);
    setPriority(tid, nice);
    return nice;
  } catch {
    return undefined;
  }
}
