/** This thread's offset onto the run's time base, µs (0 on the coordinator's host). */
let offsetUs = 0;

/**
 * The run's monotonic clock in microseconds: the host's CLOCK_MONOTONIC
 * (through libuv) plus this thread's offset. On the coordinator's host the
 * offset is 0, so it is one time base for every thread and every process
 * there: a send time stamped by a publisher thread can be subtracted from an
 * arrival time read in a device worker or another process. A load agent on
 * another host sets its offset onto the coordinator's clock
 * ({@link setClockOffsetUs}, estimated by {@link estimateOffset}), so its
 * timestamps are on the same base. It never goes backwards by itself and is
 * not wall-clock time.
 */
export function monoNowUs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3 + offsetUs;
}

/** The host's own CLOCK_MONOTONIC in µs, without this thread's offset. */
export function hostMonoUs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
}

/**
 * Puts this thread's {@link monoNowUs} on another clock: `offsetUs` is added
 * to the host's monotonic time. Each thread and process sets its own.
 */
export function setClockOffsetUs(us: number): void {
  if (!Number.isFinite(us)) throw new RangeError(`clock offset must be finite, got ${us}`);
  offsetUs = us;
}

/** This thread's current offset (see {@link setClockOffsetUs}). */
export function clockOffsetUs(): number {
  return offsetUs;
}

/** One exchange with a reference clock: asked at `sentUs`, answered `referenceUs`, back at `receivedUs` (local clock). */
export interface ClockSample {
  sentUs: number;
  referenceUs: number;
  receivedUs: number;
}

/** An offset onto a reference clock and how far it may be off. */
export interface ClockOffset {
  /** Add to the local clock to get the reference clock's time. */
  offsetUs: number;
  /** The true offset lies within ± this (half the best round trip). */
  uncertaintyUs: number;
  /** The best round trip, µs. */
  roundTripUs: number;
  /** Exchanges the estimate was taken from. */
  samples: number;
}

/**
 * Cristian's method over a burst: the exchange with the shortest round trip
 * is the one least delayed by queueing, and the reference read its clock at
 * some moment within it, so the offset is the reference time less the
 * round trip's midpoint, within ± half the round trip. Undefined without a
 * usable sample (none, or one whose answer came before its question).
 */
export function estimateOffset(samples: readonly ClockSample[]): ClockOffset | undefined {
  let best: ClockSample | undefined;
  let usable = 0;
  for (const s of samples) {
    const rtt = s.receivedUs - s.sentUs;
    if (!(rtt >= 0) || !Number.isFinite(s.referenceUs)) continue;
    usable++;
    if (best === undefined || rtt < best.receivedUs - best.sentUs) best = s;
  }
  if (best === undefined) return undefined;
  const roundTripUs = best.receivedUs - best.sentUs;
  return {
    offsetUs: best.referenceUs - (best.sentUs + best.receivedUs) / 2,
    uncertaintyUs: roundTripUs / 2,
    roundTripUs,
    samples: usable,
  };
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
