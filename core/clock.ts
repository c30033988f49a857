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
