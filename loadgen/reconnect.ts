/**
 * Client reconnect policies: how long a device waits before each attempt after
 * losing its connection (or failing to get one). Pure functions of the policy,
 * the attempt number, the previous delay and a seeded {@link Rng}, so a seed
 * replays every delay of a run. docs/scenarios.md has the same formulas.
 *
 * | policy              | delay before attempt n (1-based since the loss)            |
 * |---------------------|------------------------------------------------------------|
 * | immediate           | 0                                                          |
 * | fixed               | base                                                       |
 * | exponential         | min(cap, base·2^(n-1))                                     |
 * | full-jitter         | rand(0, min(cap, base·2^(n-1)))                            |
 * | equal-jitter        | v/2 + rand(0, v/2), v = min(cap, base·2^(n-1))             |
 * | decorrelated-jitter | min(cap, rand(base, prev·3)); prev starts at base          |
 * | server-hint         | the goaway's `reconnectAfterMs` if the loss had one, else full-jitter |
 */
import type { Rng } from '../core/rng.js';
import type { ReconnectPolicy } from '../scenarios/schema.js';

/** min(cap, base·2^(n-1)) without overflowing for large n. */
function exponentialWindowMs(policy: ReconnectPolicy, attempt: number): number {
  // 2^1024 is Infinity; past ~52 doublings any finite cap has long been reached.
  const doublings = Math.min(Math.max(0, attempt - 1), 52);
  return Math.min(policy.capMs, policy.baseMs * 2 ** doublings);
}

/**
 * The delay in ms before reconnect attempt `attempt` (1-based, counted since
 * the loss). `prevDelayMs` is the delay chosen before the previous attempt (the
 * caller starts it at `policy.baseMs`); `hintMs` is the server's
 * `reconnectAfterMs` when the loss came with a goaway. Never negative; never
 * above `capMs` except for a server hint, which is obeyed as given.
 */
export function nextDelayMs(
  policy: ReconnectPolicy,
  attempt: number,
  prevDelayMs: number,
  rng: Rng,
  hintMs?: number,
): number {
  switch (policy.policy) {
    case 'immediate':
      return 0;
    case 'fixed':
      return policy.baseMs;
    case 'exponential':
      return exponentialWindowMs(policy, attempt);
    case 'full-jitter':
      return rng.next() * exponentialWindowMs(policy, attempt);
    case 'equal-jitter': {
      const half = exponentialWindowMs(policy, attempt) / 2;
      return half + rng.next() * half;
    }
    case 'decorrelated-jitter': {
      const low = policy.baseMs;
      const high = Math.max(low, prevDelayMs * 3);
      return Math.min(policy.capMs, low + rng.next() * (high - low));
    }
    case 'server-hint':
      if (hintMs !== undefined && Number.isFinite(hintMs) && hintMs >= 0) return hintMs;
      return rng.next() * exponentialWindowMs(policy, attempt);
  }
}

/**
 * How widely a herd's first attempts spread: the width of the range attempt 1's
 * delay is drawn from (0 when every device waits the same, as with `fixed`,
 * `exponential` and `immediate`). Devices that lost their connection at one
 * moment try again across this window, so it sets the herd's connect rate.
 * A loss without a goaway is assumed (a kill, a reset): `server-hint` then
 * draws as `full-jitter`.
 */
export function firstAttemptSpreadMs(policy: ReconnectPolicy): number {
  const window = exponentialWindowMs(policy, 1);
  switch (policy.policy) {
    case 'immediate':
    case 'fixed':
    case 'exponential':
      return 0;
    case 'full-jitter':
    case 'server-hint':
      return window;
    case 'equal-jitter':
      return window / 2;
    case 'decorrelated-jitter':
      return Math.min(policy.capMs, policy.baseMs * 3) - policy.baseMs;
  }
}
