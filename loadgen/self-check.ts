import { type EventLoopUtilization, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { SelfCheck } from '../core/result.js';

/** Limits past which the generator's own delay would pollute its measurements. */
export const saturationLimits = {
  /** Event-loop delay p99 of any worker in any interval. */
  maxLagP99Ms: 50,
  /** How late a device thread starts its connect attempts after their slots, p99, in any interval. */
  maxStartLagP99Ms: 50,
  /** Event-loop utilisation of any worker over the whole run. */
  maxUtilization: 0.9,
  /**
   * Share of the run's latency samples recorded in lagging intervals. Below 1 %
   * the lagging samples cannot move p99 or any lower percentile above what the
   * rest of the samples show (at most they are the top 1 %); above it they can.
   */
  maxLateSampleShare: 0.01,
} as const;

/** What the lagging intervals of a run amount to. */
export interface LagTally {
  /** Worker intervals whose event-loop delay p99 passed the limit. */
  lateIntervals: number;
  /** Latency samples of the run, each counted once. */
  samples: number;
  /** Samples recorded by a lagging device thread, or in an interval the publisher lagged. */
  lateSamples: number;
  /** Each lagging worker's worst interval, as {@link intervalSaturation} words it. */
  worst: string[];
}

/**
 * Whether a run's lag invalidates it. A lagging interval inflates the samples
 * recorded in it, so the run is invalid when those samples are more than
 * {@link saturationLimits.maxLateSampleShare} of all; a blip below that (one
 * stalled second on a shared machine) is reported as a warning instead,
 * because p99 and below are then the server's figures, not the generator's.
 */
export function lagSaturation(t: LagTally): { reasons: string[]; warnings: string[] } {
  if (t.lateIntervals === 0) return { reasons: [], warnings: [] };
  const share = t.samples > 0 ? t.lateSamples / t.samples : 0;
  const pct = (share * 100).toFixed(share < 0.1 ? 2 : 1);
  const limit = saturationLimits.maxLateSampleShare * 100;
  if (share > saturationLimits.maxLateSampleShare) {
    return {
      reasons: [
        ...t.worst,
        `${pct}% of latency samples (${t.lateSamples} of ${t.samples}) were recorded while the generator lagged (limit ${limit}%)`,
      ],
      warnings: [],
    };
  }
  return {
    reasons: [],
    warnings: [
      ...t.worst,
      `${t.lateIntervals} lagging worker interval(s) held ${pct}% of latency samples (${t.lateSamples} of ${t.samples}; limit ${limit}%): percentiles up to p99 stand, the maximum may be the generator's`,
    ],
  };
}

/** How late one interval of a worker ran: the worse of its event-loop delay and its attempts' start lag (p99, ms). */
export function lateness(self: SelfCheck): number {
  return Math.max(self.lagP99Ms, self.startLagP99Ms ?? 0);
}

/** Why one interval of one worker makes the result invalid, or undefined if it does not. */
export function intervalSaturation(worker: string, self: SelfCheck): string | undefined {
  const parts: string[] = [];
  if (self.lagP99Ms > saturationLimits.maxLagP99Ms) {
    // A thread that was mostly idle yet late was waiting for a core other processes held.
    const why =
      self.elu < 0.5
        ? `; the thread was busy ${(self.elu * 100).toFixed(0)}%, so it waited for CPU`
        : '';
    parts.push(
      `event-loop delay p99 reached ${self.lagP99Ms.toFixed(0)}ms (limit ${saturationLimits.maxLagP99Ms}ms${why})`,
    );
  }
  const start = self.startLagP99Ms ?? 0;
  if (start > saturationLimits.maxStartLagP99Ms) {
    parts.push(
      `connect attempts started ${start.toFixed(0)}ms after their slots at p99 (limit ${saturationLimits.maxStartLagP99Ms}ms): the thread fell behind its own schedule`,
    );
  }
  return parts.length === 0 ? undefined : `${worker}: ${parts.join('; ')}`;
}

/** Why a finished run's generator is invalid: threads busy past the limit, or sends the publisher skipped. */
export function runSaturation(
  workers: readonly (SelfCheck & { worker: string })[],
  skippedSends: number,
): string[] {
  const reasons: string[] = [];
  for (const w of workers) {
    if (w.elu > saturationLimits.maxUtilization) {
      reasons.push(
        `${w.worker}: busy ${(w.elu * 100).toFixed(0)}% of the run (limit ${saturationLimits.maxUtilization * 100}%)`,
      );
    }
  }
  if (skippedSends > 0) {
    reasons.push(
      `publisher: ${skippedSends} scheduled sends skipped (too many requests in flight)`,
    );
  }
  return reasons;
}

/** Sampling period of the event-loop delay monitor. */
const RESOLUTION_MS = 10;

/** Start lags are counted in 1 ms steps up to this; later ones share the last step. */
const START_LAG_STEPS = 2000;

/** The monitor records the whole period between samples; the lag is what exceeds it. */
function lateBy(periodNs: number): number {
  return Math.max(0, periodNs / 1e6 - RESOLUTION_MS);
}

/**
 * Measures this thread's own health: event-loop utilisation (how busy the
 * thread is, a per-thread CPU figure) and event-loop delay (how late timers and
 * I/O callbacks run, which would inflate every latency this thread records).
 */
export class SelfMonitor {
  private readonly delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private intervalElu: EventLoopUtilization;
  private readonly startElu: EventLoopUtilization;
  private worstLagP99Ms = 0;
  private worstLagMaxMs = 0;
  private worstStartLagP99Ms: number | undefined;
  /** Attempts started this interval, by how many whole ms after their slot. */
  private readonly startLag = new Uint32Array(START_LAG_STEPS + 1);
  private starts = 0;
  private readonly startCpu = process.cpuUsage();
  private intervalCpu = this.startCpu;
  private readonly startMs = performance.now();
  private intervalMs = this.startMs;

  constructor() {
    this.delay.enable();
    this.startElu = performance.eventLoopUtilization();
    this.intervalElu = this.startElu;
  }

  /** CPU time of the whole process since `since`, as a share of one core over `sinceMs`. */
  private cpuShare(since: NodeJS.CpuUsage, sinceMs: number): number {
    const d = process.cpuUsage(since);
    const wallUs = (performance.now() - sinceMs) * 1000;
    return wallUs > 0 ? Math.round(((d.user + d.system) / wallUs) * 1000) / 1000 : 0;
  }

  /** A connect attempt started `lateUs` after its slot (device threads). */
  started(lateUs: number): void {
    const ms = lateUs > 0 ? Math.floor(lateUs / 1000) : 0;
    this.startLag[Math.min(ms, START_LAG_STEPS)]!++;
    this.starts++;
  }

  /**
   * This interval's start lag p99 (ms), undefined when nothing started; resets
   * the count. Under 200 starts the rank is the second slowest's at most: with
   * few attempts one late start (a GC pause) is not the thread falling behind.
   */
  private startLagP99(): number | undefined {
    if (this.starts === 0) return undefined;
    const rank = Math.max(1, Math.min(Math.ceil(this.starts * 0.99), this.starts - 1));
    let seen = 0;
    let step = 0;
    for (; step < START_LAG_STEPS; step++) {
      seen += this.startLag[step]!;
      if (seen >= rank) break;
    }
    this.startLag.fill(0);
    this.starts = 0;
    return step;
  }

  /** Health since the previous call; resets the interval. */
  interval(): SelfCheck {
    const elu = performance.eventLoopUtilization(this.intervalElu).utilization;
    this.intervalElu = performance.eventLoopUtilization();
    const processCpu = this.cpuShare(this.intervalCpu, this.intervalMs);
    this.intervalCpu = process.cpuUsage();
    this.intervalMs = performance.now();
    const lagP99Ms = this.delay.count > 0 ? lateBy(this.delay.percentile(99)) : 0;
    const lagMaxMs = this.delay.count > 0 ? lateBy(this.delay.max) : 0;
    this.delay.reset();
    this.worstLagP99Ms = Math.max(this.worstLagP99Ms, lagP99Ms);
    this.worstLagMaxMs = Math.max(this.worstLagMaxMs, lagMaxMs);
    const startLagP99Ms = this.startLagP99();
    if (startLagP99Ms === undefined) return { elu, lagP99Ms, lagMaxMs, processCpu };
    this.worstStartLagP99Ms = Math.max(this.worstStartLagP99Ms ?? 0, startLagP99Ms);
    return { elu, lagP99Ms, lagMaxMs, processCpu, startLagP99Ms };
  }

  /**
   * Health over the measured part of the thread's life: mean utilisation since
   * start, worst lag of the intervals reported so far (teardown after the last
   * report is not measured and not judged).
   */
  total(): SelfCheck {
    const elu = performance.eventLoopUtilization(this.startElu).utilization;
    this.delay.disable();
    return {
      elu,
      lagP99Ms: this.worstLagP99Ms,
      lagMaxMs: this.worstLagMaxMs,
      processCpu: this.cpuShare(this.startCpu, this.startMs),
      ...(this.worstStartLagP99Ms !== undefined && { startLagP99Ms: this.worstStartLagP99Ms }),
    };
  }
}
