/**
 * The heartbeat rule shared by the node (server/), the scenario file
 * (scenarios/) and `pushbench serve`'s flags (bin/): a node pings each
 * connection once per interval and closes one silent past its timeout, so a
 * healthy connection is silent for a whole interval (plus the sweep's timer
 * drift) between two pongs. A timeout no longer than the interval closes
 * healthy connections at their first check; in one CI run, `heartbeatInterval:
 * 30s` with the 30 s default timeout dropped 837-864 of 30,000 devices about
 * 30 s after they connected (close 1006, then reconnects).
 */
import { formatMs } from '../units.js';

/** The silence a node tolerates when none is given: three intervals, at least 30 s. */
export function defaultHeartbeatTimeoutMs(intervalMs: number): number {
  return Math.max(30_000, 3 * intervalMs);
}

/** Why `timeoutMs` would close healthy connections pinged every `intervalMs`, or null. */
export function heartbeatTimeoutProblem(intervalMs: number, timeoutMs: number): string | null {
  if (timeoutMs > intervalMs) return null;
  return `must be longer than the heartbeat interval (${formatMs(intervalMs)}), got ${formatMs(timeoutMs)}: each connection is pinged once per interval, so a healthy one is silent that long between pongs`;
}
