/**
 * The host's monotonic clock in microseconds (CLOCK_MONOTONIC through libuv).
 * It is one time base for every thread and every process of a host, so a send
 * time stamped by a publisher thread can be subtracted from an arrival time read
 * in a device worker or another process. It never goes backwards and is not
 * wall-clock time.
 */
export function monoNowUs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
}

/** A clock that can be replaced in tests. */
export interface Clock {
  /** Monotonic microseconds on the host time base. */
  nowUs(): number;
}

/** The real host clock. */
export const hostClock: Clock = { nowUs: monoNowUs };

/**
 * Calls `fn(k)` at `originUs + k * periodMs + offsetMs` on the host clock, for
 * k = 1, 2, ... Threads that share an origin therefore tick on the same grid,
 * which keeps their per-interval reports in the same timeline bucket. Returns a
 * function that stops the ticks.
 */
export function everyOnGrid(
  originUs: number,
  periodMs: number,
  fn: (k: number) => void,
  offsetMs = 0,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const periodUs = periodMs * 1000;
  const schedule = () => {
    const now = monoNowUs();
    const k = Math.max(1, Math.floor((now - originUs - offsetMs * 1000) / periodUs) + 1);
    const at = originUs + k * periodUs + offsetMs * 1000;
    timer = setTimeout(
      () => {
        if (stopped) return;
        fn(k);
        schedule();
      },
      Math.max(0, (at - now) / 1000),
    );
  };
  schedule();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
