/**
 * A token bucket refilled lazily on each take: no timers, a few numbers of
 * state, so one can sit in every connection.
 */
export class TokenBucket {
  private tokens: number;
  private updatedMs: number;

  /** `ratePerSec` tokens per second, at most `burst` stored; starts full. */
  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    nowMs: number,
  ) {
    this.tokens = burst;
    this.updatedMs = nowMs;
  }

  /** Takes one token if available; false means "over the rate". */
  take(nowMs: number): boolean {
    const elapsed = Math.max(0, nowMs - this.updatedMs);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
    this.updatedMs = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until a token will be available (0 if one is). */
  waitMs(nowMs: number): number {
    const elapsed = Math.max(0, nowMs - this.updatedMs);
    const tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * 1000) / this.ratePerSec);
  }
}
