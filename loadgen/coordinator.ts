import { EventEmitter } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { everyOnGrid, monoNowUs } from '../core/clock.js';
import { PushbenchError } from '../core/errors.js';
import { startWorkerBeside } from '../core/runtime.js';
import {
  createLatencyHistogram,
  type LatencyHistogram,
  mergeSnapshot,
  summarize,
} from '../reports/histogram.js';
import { Bitset, type DeliveryLedger, reconcileLedger } from '../reports/ledger.js';
import type { Scenario } from '../scenarios/schema.js';
import type {
  DeviceFinal,
  DeviceWorkerData,
  FromWorker,
  PublisherFinal,
  PublisherWorkerData,
  SelfCheck,
  ToWorker,
  WsTarget,
} from './messages.js';
import { intervalSaturation, runSaturation } from './self-check.js';

/** How long after each interval's end the coordinator waits for the workers' reports. */
const FLUSH_LAG_MS = 250;

/** What the load generator needs to know about the system under test. */
export interface LoadPlan {
  scenario: Scenario;
  target: WsTarget;
  httpUrl: string;
  secret: string;
  apiKey: string;
  /** Interval of worker reports and of the timeline. Default 1000 ms. */
  reportIntervalMs?: number;
  /** Source addresses for device sockets; empty lets the kernel choose. */
  localAddresses?: string[];
  /** Called after the delivery deadline and before devices close (e.g. to read server counts). */
  beforeClose?: () => Promise<void>;
  /** Reads each node's connection count; called once per interval for the timeline. */
  sampleNodes?: () => Promise<Record<string, number>>;
}

/** One second (one report interval) of the run, as the coordinator saw it. */
export interface TimelinePoint {
  /** Seconds since the fleet started connecting. */
  t: number;
  phase: RunPhase;
  open: number;
  connectAttempts: number;
  connectFailures: number;
  disconnects: number;
  sent: number;
  accepted: number;
  received: number;
  pushP50Ms: number | null;
  pushP99Ms: number | null;
  connectP99Ms: number | null;
  /** Connections each node reported holding at this point (its own /metrics), when sampled. */
  nodes?: Record<string, number>;
  /** Busiest worker's event-loop utilisation this interval. */
  maxElu: number;
  /** Worst worker event-loop delay p99 this interval, ms. */
  maxLagP99Ms: number;
}

/** The phases of a run, in order. */
export type RunPhase = 'connecting' | 'publishing' | 'draining' | 'closing' | 'done';

/** One worker's health over the run. */
export interface WorkerHealth extends SelfCheck {
  worker: string;
}

/** Everything the load generator measured. */
export interface LoadResult {
  connections: {
    requested: number;
    established: number;
    heldAtEnd: number;
    failed: number;
    failuresByReason: Record<string, number>;
    closesByCode: Record<string, number>;
  };
  ledger: DeliveryLedger;
  /** Merged histograms by series: `push`, `connect`, `api`. */
  histograms: Record<string, LatencyHistogram>;
  timeline: TimelinePoint[];
  generator: { valid: boolean; reasons: string[]; workers: WorkerHealth[]; skippedSends: number };
  /** Scheduled messages never sent because no device was connected when publishing began. */
  unaddressed: number;
  /** Frames devices received that were not readable pushes. */
  badFrames: number;
  /** Per-interval merged histograms, in time order. */
  intervals: IntervalHistograms[];
  /** Phase changes on the run's time axis. */
  markers: RunMarker[];
  /** Host-monotonic µs when the fleet started and when publishing started/ended. */
  marks: { startUs: number; publishStartUs: number; publishEndUs: number; endUs: number };
}

interface Accumulator {
  open: Map<number, number>;
  connectAttempts: number;
  connectFailures: number;
  disconnects: number;
  sent: number;
  accepted: number;
  received: number;
  /** This interval's histograms by series (`push`, `connect`, `api`). */
  histograms: Record<string, LatencyHistogram>;
  maxElu: number;
  maxLagP99Ms: number;
}

/** The latency series every run records. */
export const RUN_SERIES = ['push', 'connect', 'api'] as const;

/** One report interval's merged histograms, for HdrHistogram interval logs. */
export interface IntervalHistograms {
  /** Interval start and end, ms since the fleet started. */
  startMs: number;
  endMs: number;
  histograms: Record<string, LatencyHistogram>;
}

/** A labelled instant on the run's time axis (phase changes now; faults later). */
export interface RunMarker {
  /** Seconds since the fleet started. */
  t: number;
  kind: 'phase';
  label: string;
}

/**
 * The coordinator: starts device workers and the publisher, drives the phases
 * (connect, publish, drain, close), merges the workers' encoded histogram
 * snapshots and ledgers, and emits `phase` and `interval` events for progress
 * displays. It talks to the system under test only through its workers' sockets.
 */
export class Coordinator extends EventEmitter<{
  phase: [RunPhase];
  interval: [TimelinePoint];
}> {
  private readonly histograms: Record<string, LatencyHistogram> = {
    push: createLatencyHistogram(),
    connect: createLatencyHistogram(),
    api: createLatencyHistogram(),
  };
  private readonly timeline: TimelinePoint[] = [];
  private readonly intervals: IntervalHistograms[] = [];
  private readonly markers: RunMarker[] = [];
  private intervalStartUs = 0;
  private readonly reasons = new Set<string>();
  private acc: Accumulator = this.freshAccumulator();
  private phase: RunPhase = 'connecting';
  private startUs = 0;
  private totalAccepted = 0;
  private totalReceived = 0;

  constructor(private readonly plan: LoadPlan) {
    super();
  }

  private freshAccumulator(): Accumulator {
    return {
      open: this.acc?.open ?? new Map(),
      connectAttempts: 0,
      connectFailures: 0,
      disconnects: 0,
      sent: 0,
      accepted: 0,
      received: 0,
      histograms: Object.fromEntries(RUN_SERIES.map((k) => [k, createLatencyHistogram()])),
      maxElu: 0,
      maxLagP99Ms: 0,
    };
  }

  private setPhase(phase: RunPhase): void {
    this.phase = phase;
    if (this.startUs > 0) {
      const t = Math.max(0, Math.round((monoNowUs() - this.startUs) / 1e4) / 100);
      this.markers.push({ t, kind: 'phase', label: phase });
    }
    this.emit('phase', phase);
  }

  private noteSelf(worker: string, self: SelfCheck): void {
    this.acc.maxElu = Math.max(this.acc.maxElu, self.elu);
    this.acc.maxLagP99Ms = Math.max(this.acc.maxLagP99Ms, self.lagP99Ms);
    const reason = intervalSaturation(worker, self);
    if (reason) this.reasons.add(reason);
  }

  private flushInterval(): void {
    const a = this.acc;
    const pushH = a.histograms.push!;
    const connectH = a.histograms.connect!;
    const push = pushH.totalCount > 0 ? summarize(pushH) : null;
    const connect = connectH.totalCount > 0 ? summarize(connectH) : null;
    const nowUs = monoNowUs();
    this.intervals.push({
      startMs: Math.max(0, (this.intervalStartUs - this.startUs) / 1000),
      endMs: Math.max(0, (nowUs - this.startUs) / 1000),
      histograms: a.histograms,
    });
    this.intervalStartUs = nowUs;
    let open = 0;
    for (const n of a.open.values()) open += n;
    const point: TimelinePoint = {
      t: Math.round((monoNowUs() - this.startUs - FLUSH_LAG_MS * 1000) / 1e5) / 10,
      phase: this.phase,
      open,
      connectAttempts: a.connectAttempts,
      connectFailures: a.connectFailures,
      disconnects: a.disconnects,
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
    this.acc = this.freshAccumulator();
    // Sample the nodes' own counts; the point is completed when the answer arrives.
    this.plan.sampleNodes?.().then(
      (nodes) => {
        point.nodes = nodes;
      },
      () => {},
    );
    this.emit('interval', point);
  }

  /** Merges a worker's snapshot into the run total and the current interval. */
  private mergeInto(series: string, snapshot: string): void {
    const total = this.histograms[series];
    if (total) mergeSnapshot(total, snapshot);
    const interval = this.acc.histograms[series];
    if (interval) mergeSnapshot(interval, snapshot);
  }

  /** Runs the load to completion. Rejects with `PB_WORKER_FAILED` if a worker dies. */
  async run(): Promise<LoadResult> {
    const { scenario } = this.plan;
    const reportIntervalMs = this.plan.reportIntervalMs ?? 1000;
    const deviceWorkers = Math.max(1, Math.min(scenario.workers, scenario.devices.count));
    const workers: Worker[] = [];
    const finals: DeviceFinal[] = [];
    let publisherFinal: PublisherFinal | undefined;
    const established: Int32Array[] = [];
    let rampsDone = 0;
    let ready = 0;
    let failed = 0;

    let fail: (err: Error) => void = () => {};
    const failed$ = new Promise<never>((_, reject) => {
      fail = reject;
    });
    failed$.catch(() => {});
    const waiters: Array<() => void> = [];
    const wake = () => {
      for (const w of waiters.splice(0)) w();
    };
    const until = async (cond: () => boolean): Promise<void> => {
      while (!cond()) {
        await Promise.race([new Promise<void>((r) => waiters.push(r)), failed$]);
      }
    };

    const onMessage = (name: string, msg: FromWorker) => {
      switch (msg.type) {
        case 'ready':
          ready++;
          break;
        case 'ramp-done':
          rampsDone++;
          failed += msg.failed;
          established.push(msg.established);
          break;
        case 'device-interval':
          this.acc.open.set(msg.workerIndex, msg.open);
          this.acc.connectAttempts += msg.connectAttempts;
          this.acc.connectFailures += msg.connectFailures;
          this.acc.disconnects += msg.disconnects;
          this.acc.received += msg.received;
          this.totalReceived += msg.received;
          for (const [series, snap] of Object.entries(msg.histograms)) this.mergeInto(series, snap);
          this.noteSelf(name, msg.self);
          break;
        case 'device-final':
          for (const [series, snap] of Object.entries(msg.histograms)) this.mergeInto(series, snap);
          finals.push(msg);
          break;
        case 'publisher-interval':
          this.acc.sent += msg.sent;
          this.acc.accepted += msg.accepted;
          this.totalAccepted += msg.accepted;
          for (const [series, snap] of Object.entries(msg.histograms)) this.mergeInto(series, snap);
          this.noteSelf(name, msg.self);
          break;
        case 'publisher-final':
          for (const [series, snap] of Object.entries(msg.histograms)) this.mergeInto(series, snap);
          publisherFinal = msg;
          break;
        case 'fatal':
          fail(
            new PushbenchError('PB_WORKER_FAILED', `${name} failed: ${msg.message.split('\n')[0]}`),
          );
          break;
      }
      wake();
    };

    const spawn = (name: string, data: DeviceWorkerData | PublisherWorkerData): Worker => {
      const worker = startWorkerBeside(import.meta.url, './worker', data);
      worker.on('message', (msg: FromWorker) => onMessage(name, msg));
      worker.on('error', (err) =>
        fail(new PushbenchError('PB_WORKER_FAILED', `${name} crashed: ${err.message}`)),
      );
      worker.on('exit', (code) => {
        if (code !== 0 && this.phase !== 'done') {
          fail(new PushbenchError('PB_WORKER_FAILED', `${name} exited with code ${code}`));
        }
      });
      workers.push(worker);
      return worker;
    };

    const per = Math.floor(scenario.devices.count / deviceWorkers);
    const extra = scenario.devices.count % deviceWorkers;
    const deviceThreads: Worker[] = [];
    let first = 0;
    for (let i = 0; i < deviceWorkers; i++) {
      const count = per + (i < extra ? 1 : 0);
      deviceThreads.push(
        spawn(`device worker ${i}`, {
          role: 'devices',
          workerIndex: i,
          firstDevice: first,
          deviceCount: count,
          target: this.plan.target,
          secret: this.plan.secret,
          tokenTtlSec: 24 * 3600,
          accounts: scenario.devices.accounts,
          connectRateHz: (scenario.devices.connectRateHz * count) / scenario.devices.count,
          connectTimeoutMs: scenario.devices.connectTimeoutMs,
          reportIntervalMs,
          localAddresses: this.plan.localAddresses ?? [],
        }),
      );
      first += count;
    }
    const publisher = spawn('publisher', {
      role: 'publisher',
      httpUrl: this.plan.httpUrl,
      apiKey: this.plan.apiKey,
      rateHz: scenario.traffic.direct.rateHz,
      durationMs: scenario.durationMs,
      payloadBytes: scenario.traffic.direct.payloadBytes,
      maxInFlight: 10_000,
      requestTimeoutMs: 10_000,
      reportIntervalMs,
      seed: scenario.seed,
    });
    const send = (w: Worker, msg: ToWorker) => w.postMessage(msg);

    let stopTicker: () => void = () => {};
    try {
      // Start only once every thread has loaded: a schedule that began while a
      // worker was still compiling would open with a burst of overdue connects.
      await until(() => ready === workers.length);
      // Give every thread its start time on the shared host clock.
      this.startUs = monoNowUs() + 50_000;
      this.intervalStartUs = this.startUs;
      this.setPhase('connecting');
      for (const w of deviceThreads)
        send(w, { type: 'start', atUs: this.startUs, gridUs: this.startUs });
      // Flush a little after each grid point so the workers' reports for it have arrived.
      stopTicker = everyOnGrid(
        this.startUs,
        reportIntervalMs,
        () => this.flushInterval(),
        FLUSH_LAG_MS,
      );
      await until(() => rampsDone === deviceThreads.length);

      this.setPhase('publishing');
      const targets = Int32Array.from(established.flatMap((a) => Array.from(a)));
      const publishStartUs = monoNowUs() + 10_000;
      send(publisher, { type: 'start', atUs: publishStartUs, gridUs: this.startUs, targets });
      await until(() => publisherFinal !== undefined);
      const publishEndUs = monoNowUs();

      // Wait until every accepted message has arrived, or the delivery deadline.
      this.setPhase('draining');
      const deadlineUs = publishEndUs + scenario.deliveryDeadlineMs * 1000;
      while (this.totalReceived < this.totalAccepted && monoNowUs() < deadlineUs) {
        await Promise.race([
          new Promise<void>((r) => waiters.push(r)),
          new Promise<void>((r) => setTimeout(r, 50)),
          failed$,
        ]);
      }
      for (const w of deviceThreads) send(w, { type: 'deadline' });

      await this.plan.beforeClose?.();
      this.setPhase('closing');
      for (const w of deviceThreads) send(w, { type: 'finish' });
      await until(() => finals.length === deviceThreads.length);
      stopTicker();
      stopTicker = () => {};
      this.flushInterval();
      this.setPhase('done');

      return this.result(finals, publisherFinal!, failed, {
        startUs: this.startUs,
        publishStartUs,
        publishEndUs,
        endUs: monoNowUs(),
      });
    } finally {
      stopTicker();
      this.phase = 'done';
      await Promise.all(workers.map((w) => w.terminate()));
    }
  }

  private result(
    finals: DeviceFinal[],
    pub: PublisherFinal,
    failed: number,
    marks: LoadResult['marks'],
  ): LoadResult {
    const delivered = new Bitset();
    const late = new Bitset();
    let duplicates = 0;
    let heldAtEnd = 0;
    let established = 0;
    let badFrames = 0;
    const failuresByReason: Record<string, number> = {};
    const closesByCode: Record<string, number> = {};
    const workers: WorkerHealth[] = [];
    for (const f of finals.sort((a, b) => a.workerIndex - b.workerIndex)) {
      delivered.addAll(new Bitset(f.delivered));
      late.addAll(new Bitset(f.late));
      duplicates += f.duplicates;
      heldAtEnd += f.heldAtEnd;
      established += f.established;
      badFrames += f.badFrames;
      for (const [k, v] of Object.entries(f.connectFailuresByReason)) {
        failuresByReason[k] = (failuresByReason[k] ?? 0) + v;
      }
      for (const [k, v] of Object.entries(f.closesByCode))
        closesByCode[k] = (closesByCode[k] ?? 0) + v;
      workers.push({ worker: `devices-${f.workerIndex}`, ...f.self });
    }
    workers.push({ worker: 'publisher', ...pub.self });
    for (const reason of runSaturation(workers, pub.skipped)) this.reasons.add(reason);
    const ledger = reconcileLedger(
      {
        sent: pub.sent,
        accepted: new Bitset(pub.accepted),
        rejectedByStatus: pub.rejectedByStatus,
      },
      { delivered, late, duplicates },
    );
    return {
      connections: {
        requested: this.plan.scenario.devices.count,
        established,
        heldAtEnd,
        failed,
        failuresByReason,
        closesByCode,
      },
      ledger,
      histograms: this.histograms,
      timeline: this.timeline,
      generator: {
        valid: this.reasons.size === 0,
        reasons: [...this.reasons],
        workers,
        skippedSends: pub.skipped,
      },
      unaddressed: pub.noTarget,
      badFrames,
      intervals: this.intervals,
      markers: this.markers,
      marks,
    };
  }
}
