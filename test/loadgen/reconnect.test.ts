import { describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import { firstAttemptSpreadMs, nextDelayMs } from '../../loadgen/reconnect.js';
import type { ReconnectPolicy, ReconnectPolicyName } from '../../scenarios/schema.js';
import { RECONNECT_POLICIES } from '../../scenarios/types.js';

const policy = (name: ReconnectPolicyName, baseMs = 100, capMs = 10_000): ReconnectPolicy => ({
  policy: name,
  baseMs,
  capMs,
  maxAttempts: 0,
});

/** Draws `n` delays for attempt `attempt` with a fresh seeded generator. */
function draws(p: ReconnectPolicy, attempt: number, n: number, prevMs = p.baseMs): number[] {
  const rng = new Rng(7);
  return Array.from({ length: n }, () => nextDelayMs(p, attempt, prevMs, rng));
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('reconnect policies', () => {
  it('immediate waits 0 and fixed waits the base, whatever the attempt', () => {
    const rng = new Rng(1);
    for (const n of [1, 2, 10]) {
      expect(nextDelayMs(policy('immediate'), n, 100, rng)).toBe(0);
      expect(nextDelayMs(policy('fixed', 250), n, 100, rng)).toBe(250);
    }
  });

  it('exponential doubles from the base up to the cap', () => {
    const p = policy('exponential', 100, 1000);
    const rng = new Rng(1);
    const seq = [1, 2, 3, 4, 5, 6, 2000].map((n) => nextDelayMs(p, n, 0, rng));
    expect(seq).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('full jitter stays in [0, window) with a mean near half the window', () => {
    const p = policy('full-jitter', 100, 10_000);
    const xs = draws(p, 4, 20_000); // window 800
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(800);
    expect(mean(xs)).toBeGreaterThan(380);
    expect(mean(xs)).toBeLessThan(420);
    // Capped: attempt 30 draws within [0, cap).
    expect(Math.max(...draws(p, 30, 1000))).toBeLessThan(10_000);
  });

  it('equal jitter stays in [window/2, window) with a mean near three quarters', () => {
    const xs = draws(policy('equal-jitter', 100, 10_000), 3, 20_000); // window 400
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(200);
    expect(Math.max(...xs)).toBeLessThan(400);
    expect(mean(xs)).toBeGreaterThan(290);
    expect(mean(xs)).toBeLessThan(310);
  });

  it('decorrelated jitter draws in [base, 3·prev] and never exceeds the cap', () => {
    const p = policy('decorrelated-jitter', 100, 2000);
    const rng = new Rng(3);
    let prev = p.baseMs;
    let reachedCap = 0;
    for (let n = 1; n <= 5000; n++) {
      const d = nextDelayMs(p, n, prev, rng);
      expect(d).toBeGreaterThanOrEqual(100);
      expect(d).toBeLessThanOrEqual(Math.min(2000, prev * 3));
      if (d === 2000) reachedCap++;
      prev = d;
    }
    // A chain grows (E[next] ≈ 2·prev) until the cap bites.
    expect(reachedCap).toBeGreaterThan(0);
    const first = draws(p, 1, 10_000, 100);
    expect(mean(first)).toBeGreaterThan(190);
    expect(mean(first)).toBeLessThan(210);
  });

  it('server hint obeys the goaway delay and falls back to full jitter without one', () => {
    const p = policy('server-hint', 100, 10_000);
    const rng = new Rng(5);
    expect(nextDelayMs(p, 1, 100, rng, 300)).toBe(300);
    expect(nextDelayMs(p, 1, 100, rng, 0)).toBe(0);
    const xs = Array.from({ length: 5000 }, () => nextDelayMs(p, 2, 100, rng));
    expect(Math.max(...xs)).toBeLessThan(200);
    expect(mean(xs)).toBeGreaterThan(90);
    expect(mean(xs)).toBeLessThan(110);
  });

  it('replays the same delays from the same seed', () => {
    const p = policy('full-jitter');
    expect(draws(p, 3, 50)).toEqual(draws(p, 3, 50));
  });

  // The preflight plans a herd's connect rate from this spread (run/preflight.ts).
  it.each(RECONNECT_POLICIES)(
    "gives %s's spread of first attempts as the range its first delays are drawn from",
    (name) => {
      for (const p of [policy(name, 500, 5000), policy(name, 2000, 3000)]) {
        const first = draws(p, 1, 4000);
        const range = Math.max(...first) - Math.min(...first);
        expect(firstAttemptSpreadMs(p)).toBeGreaterThanOrEqual(range);
        expect(firstAttemptSpreadMs(p)).toBeLessThanOrEqual(range * 1.01 + 1e-9);
      }
    },
  );
});
