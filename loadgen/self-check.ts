import { type EventLoopUtilization, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { SelfCheck } from './messages.js';

/**
 * Measures this thread's own health: event-loop utilisation (how busy the
 * thread is, a per-thread CPU figure) and event-loop delay (how late timers and
 * I/O callbacks run, which would inflate every latency this thread records).
 */
export class SelfMonitor {
  private readonly delay = monitorEventLoopDelay({ resolution: 10 });
  private intervalElu: EventLoopUtilization;
  private readonly startElu: EventLoopUtilization;
  private worstLagP99Ms = 0;
  private worstLagMaxMs = 0;

  constructor() {
    this.delay.enable();
    this.startElu = performance.eventLoopUtilization();
    this.intervalElu = this.startElu;
  }

  /** Health since the previous call; resets the interval. */
  interval(): SelfCheck {
    const elu = performance.eventLoopUtilization(this.intervalElu).utilization;
    this.intervalElu = performance.eventLoopUtilization();
    const lagP99Ms = this.delay.count > 0 ? this.delay.percentile(99) / 1e6 : 0;
    const lagMaxMs = this.delay.count > 0 ? this.delay.max / 1e6 : 0;
    this.delay.reset();
    this.worstLagP99Ms = Math.max(this.worstLagP99Ms, lagP99Ms);
    this.worstLagMaxMs = Math.max(this.worstLagMaxMs, lagMaxMs);
    return { elu, lagP99Ms, lagMaxMs };
  }

  /** Health over the whole life of the thread: mean utilisation, worst interval lag. */
  total(): SelfCheck {
    this.interval();
    const elu = performance.eventLoopUtilization(this.startElu).utilization;
    this.delay.disable();
    return { elu, lagP99Ms: this.worstLagP99Ms, lagMaxMs: this.worstLagMaxMs };
  }
}
