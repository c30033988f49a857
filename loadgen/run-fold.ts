/**
 * The coordinator's fold over its workers' messages. Every report a device
 * shard or the publisher sends goes through `apply`, which merges its encoded
 * histograms into the run's totals and into the interval in progress, sums its
 * counters, and notes the generator's own health. `flush` closes an interval
 * into one timeline point. Nothing here spawns, waits or fails a run: that is
 * the coordinator's job; this is arithmetic on messages.
 */
import { monoNowUs } from '../core/clock.js';
import {
  createLatencyHistogram,
  type LatencyHistogram,
  mergeSnapshot,
  summarize,
} from '../core/measure/histogram.js';
import { addCounts } from '../core/measure/ledger.js';
import {
  type ConnectionEvents,
  type IntervalHistograms,
  RUN_SERIES,
  type RunPhase,
  type SelfCheck,
  type TimelinePoint,
} from '../core/result.js';
import type { DeviceFinal, FromWorker, PublisherFinal } from './messages.js';
import { intervalSaturation, lagSaturation, lateness } from './self-check.js';

/** How long after each interval's end the coordinator flushes it, so the workers' reports for it have arrived. */
export const FLUSH_LAG_MS = 250;

/** What one report interval has summed so far. */
interface IntervalSums extends ConnectionEvents {
  traffic: Record<string, number>;
  sent: number;
  accepted: number;
  received: number;
  /** This interval's histograms by series (`push`, `connect`, `api`, ...). */
  histograms: Record<string, LatencyHistogram>;
  maxElu: number;
  maxLagP99Ms: number;
  /** Latency samples merged this interval (base series only, not `<series>@<region>` copies). */
  samples: number;
  /** Of those, samples a device worker recorded while its own event loop lagged past the limit. */
  lateSamples: number;
  /** The publisher lagged this interval: every sample of it may carry the publisher's delay. */
  publisherLate: boolean;
}

/** An interval's connection events before anything happened. */
export function noConnectionEvents(): ConnectionEvents {
  return {
    connectAttempts: 0,
    connectFailures: 0,
    disconnects: 0,
    reconnectAttempts: 0,
    reconnects: 0,
    losses: 0,
    periodic: 0,
    failuresByReason: {},
  };
}

function emptyInterval(): IntervalSums {
  return {
    ...noConnectionEvents(),
    traffic: {},
    sent: 0,
    accepted: 0,
    received: 0,
    histograms: Object.fromEntries(RUN_SERIES.map((k) => [k, createLatencyHistogram()])),
    maxElu: 0,
    maxLagP99Ms: 0,
    samples: 0,
    lateSamples: 0,
    publisherLate: false,
  };
}

/** A worker message the fold takes; `fatal` is the coordinator's to handle. */
export type FoldedMessage = Exclude<FromWorker, { type: 'fatal' }>;

/** The run as its workers' messages have told it so far. */
export class RunFold {
  /** Run-total histograms by series. */
  readonly histograms: Record<string, LatencyHistogram> = Object.fromEntries(
    RUN_SERIES.map((k) => [k, createLatencyHistogram()]),
  );
  readonly timeline: TimelinePoint[] = [];
  readonly intervals: IntervalHistograms[] = [];
  /** Workers that have loaded and said `ready`. */
  ready = 0;
  /** Device shards whose initial ramp has resolved, and the devices each left open. */
  rampsDone = 0;
  readonly established: Int32Array[] = [];
  readonly finals: DeviceFinal[] = [];
  publisherFinal: PublisherFinal | undefined;
  totalAccepted = 0;
  totalReceived = 0;

  private acc = emptyInterval();
  /** Per shard: devices open now, and devices open at least once so far. */
  private readonly open = new Map<number, number>();
  private readonly everOpen = new Map<number, number>();
  /** First connect attempts so far, all workers. */
  private requestedSoFar = 0;
  private startUs = 0;
  private intervalStartUs = 0;
  /** Worker intervals that lagged past the limit, all workers. */
  private lateIntervals = 0;
  /** Per worker: its worst interval's lag, and the reason it gives. */
  private readonly worstLag = new Map<string, number>();
  private readonly lagReasons = new Map<string, string>();
  /** Latency samples of the whole run, and those recorded while the generator lagged. */
  private samplesAll = 0;
  private samplesLate = 0;
  /** Interval reports that arrived after their interval was flushed (merged into it all the same). */
  lateReports = 0;
  /** The group of the message being folded, if any. */
  private group: Record<string, LatencyHistogram> | undefined;

  private groupHistograms(name: string): Record<string, LatencyHistogram> {
    let g = this.groups.get(name);
    if (g === undefined) {
      g = {};
      this.groups.set(name, g);
    }
    return g;
  }

  /** Fixes t = 0 of the timeline and the start of the first interval (host-monotonic µs). */
  begin(startUs: number): void {
    this.startUs = startUs;
    this.intervalStartUs = startUs;
  }

  /** Per named group of shards (a load agent on another host): its merged histograms by series. */
  readonly groups = new Map<string, Record<string, LatencyHistogram>>();

  /**
   * Folds one message from worker `source` (a name used in the generator's
   * reasons); a device shard's latency also goes to its `group`'s histograms.
   */
  apply(source: string, msg: FoldedMessage, group?: string): void {
    this.group = group === undefined ? undefined : this.groupHistograms(group);
    const a = this.acc;
    switch (msg.type) {
      case 'ready':
        this.ready++;
        break;
      case 'ramp-done':
        this.rampsDone++;
        this.established.push(msg.established);
        break;
      case 'device-interval': {
        this.open.set(msg.workerIndex, msg.open);
        this.everOpen.set(msg.workerIndex, msg.established);
        addEvents(a, msg);
        addCounts(a.traffic, msg.trafficCounters);
        a.received += msg.received;
        this.totalReceived += msg.received;
        const past = this.pastInterval(msg.atUs);
        const samples = this.mergeAll(msg.histograms, past);
        const lagged = this.noteSelf(source, msg.self);
        if (past === undefined) {
          a.samples += samples;
          if (lagged) a.lateSamples += samples;
        } else {
          this.samplesAll += samples;
          if (lagged) this.samplesLate += samples;
        }
        break;
      }
      case 'device-final':
        this.samplesAll += this.mergeAll(msg.histograms);
        this.finals.push(msg);
        break;
      case 'publisher-interval': {
        a.sent += msg.sent;
        a.accepted += msg.accepted;
        this.totalAccepted += msg.accepted;
        const past = this.pastInterval(msg.atUs);
        const samples = this.mergeAll(msg.histograms, past);
        const lagged = this.noteSelf(source, msg.self);
        if (past === undefined) {
          a.samples += samples;
          if (lagged) a.publisherLate = true;
        } else {
          this.samplesAll += samples;
          if (lagged) this.samplesLate += samples;
        }
        break;
      }
      case 'publisher-final':
        this.samplesAll += this.mergeAll(msg.histograms);
        this.publisherFinal = msg;
        break;
      default:
        msg satisfies never;
    }
  }

  /** Closes the interval in progress into a timeline point (also kept in `timeline`). */
  flush(phase: RunPhase): TimelinePoint {
    const a = this.acc;
    this.countSamples(a);
    const push = a.histograms.push!.totalCount > 0 ? summarize(a.histograms.push!) : null;
    const connect = a.histograms.connect!.totalCount > 0 ? summarize(a.histograms.connect!) : null;
    const nowUs = monoNowUs();
    this.intervals.push({
      startMs: Math.max(0, (this.intervalStartUs - this.startUs) / 1000),
      endMs: Math.max(0, (nowUs - this.startUs) / 1000),
      histograms: a.histograms,
    });
    this.intervalStartUs = nowUs;
    this.requestedSoFar += a.connectAttempts - a.reconnectAttempts;
    const point: TimelinePoint = {
      t: Math.round((nowUs - this.startUs - FLUSH_LAG_MS * 1000) / 1e5) / 10,
      phase,
      open: sum(this.open),
      requested: this.requestedSoFar,
      established: sum(this.everOpen),
      connectAttempts: a.connectAttempts,
      connectFailures: a.connectFailures,
      disconnects: a.disconnects,
      reconnectAttempts: a.reconnectAttempts,
      reconnects: a.reconnects,
      losses: a.losses,
      periodic: a.periodic,
      failuresByReason: a.failuresByReason,
      traffic: a.traffic,
      sent: a.sent,
      accepted: a.accepted,
      received: a.received,
      pushP50Ms: push?.p50 ?? null,
      pushP99Ms: push?.p99 ?? null,
      connectP99Ms: connect?.p99 ?? null,
      maxElu: Math.round(a.maxElu * 1000) / 1000,
      maxLagP99Ms: Math.round(a.maxLagP99Ms * 10) / 10,
    };
    this.timeline.push(point);
    this.acc = emptyInterval();
    return point;
  }

  /**
   * The generator's lag over the run: reasons that invalidate it and warnings
   * that do not. Counts the interval in progress too (merged, never flushed).
   */
  lag(): { reasons: string[]; warnings: string[] } {
    this.countSamples(this.acc);
    this.acc = { ...emptyInterval(), histograms: this.acc.histograms };
    return lagSaturation({
      lateIntervals: this.lateIntervals,
      samples: this.samplesAll,
      lateSamples: this.samplesLate,
      worst: [...this.lagReasons.values()],
    });
  }

  private countSamples(a: IntervalSums): void {
    this.samplesAll += a.samples;
    this.samplesLate += a.publisherLate ? a.samples : a.lateSamples;
  }

  /** Records a worker's interval health; true when that interval lagged past the limit. */
  private noteSelf(worker: string, self: SelfCheck): boolean {
    this.acc.maxElu = Math.max(this.acc.maxElu, self.elu);
    this.acc.maxLagP99Ms = Math.max(this.acc.maxLagP99Ms, self.lagP99Ms);
    const reason = intervalSaturation(worker, self);
    if (reason === undefined) return false;
    this.lateIntervals++;
    // One reason per worker: its worst interval.
    if (lateness(self) > (this.worstLag.get(worker) ?? 0)) {
      this.worstLag.set(worker, lateness(self));
      this.lagReasons.set(worker, reason);
    }
    return true;
  }

  /**
   * The interval already closed that a report stamped `atUs` (on the
   * coordinator's clock) belongs to, or undefined for the one in progress. A
   * report that arrives after its interval was flushed (an agent across a slow
   * link) is merged there, never dropped and never moved to a later second.
   */
  private pastInterval(atUs: number): IntervalHistograms | undefined {
    if (this.startUs === 0 || atUs >= this.intervalStartUs) return undefined;
    const relMs = (atUs - this.startUs) / 1000;
    for (let k = this.intervals.length - 1; k >= 0; k--) {
      const iv = this.intervals[k]!;
      if (relMs > iv.startMs || k === 0) {
        this.lateReports++;
        return iv;
      }
    }
    return undefined;
  }

  /** Merges a worker's encoded histograms into the run and its interval (`past`, or the one in progress); the samples they hold. */
  private mergeAll(histograms: Record<string, string>, past?: IntervalHistograms): number {
    let samples = 0;
    const interval = past?.histograms ?? this.acc.histograms;
    for (const [series, snapshot] of Object.entries(histograms)) {
      this.histograms[series] ??= createLatencyHistogram();
      interval[series] ??= createLatencyHistogram();
      const targets = [this.histograms[series], interval[series]];
      if (this.group !== undefined) {
        this.group[series] ??= createLatencyHistogram();
        targets.push(this.group[series]);
      }
      // Decoded once, added to the run's histogram, its second's and its group's.
      const count = mergeSnapshot(targets, snapshot);
      // `push@eu` repeats samples of `push`: count each sample once. `connect_failed`
      // times the failure path, a diagnostic no gate reads: the generator's validity
      // share stays over the series that are judged.
      if (!series.includes('@') && series !== 'connect_failed') samples += count;
    }
    return samples;
  }
}

/** Adds one interval's connection events into `into`. */
export function addEvents(into: ConnectionEvents, from: ConnectionEvents): void {
  into.connectAttempts += from.connectAttempts;
  into.connectFailures += from.connectFailures;
  into.disconnects += from.disconnects;
  into.reconnectAttempts += from.reconnectAttempts;
  into.reconnects += from.reconnects;
  into.losses += from.losses;
  into.periodic += from.periodic;
  addCounts(into.failuresByReason, from.failuresByReason);
}

function sum(m: Map<number, number>): number {
  let n = 0;
  for (const v of m.values()) n += v;
  return n;
}
