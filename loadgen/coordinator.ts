import { EventEmitter } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { everyOnGrid, monoNowUs } from '../core/clock.js';
import { PushbenchError } from '../core/errors.js';
import { processLimits } from '../core/machine.js';
import {
  createLatencyHistogram,
  type LatencyHistogram,
  mergeSnapshot,
  summarize,
} from '../core/measure/histogram.js';
import { Bitset, type DeliveryLedger, reconcileLedger } from '../core/measure/ledger.js';
import { startWorkerBeside } from '../core/runtime.js';
import type { Scenario } from '../scenarios/schema.js';
import type {
  DeviceFinal,
  DeviceRoute,
  DeviceWorkerData,
  FromWorker,
  PublisherFinal,
  PublisherWorkerData,
  SelfCheck,
  ToWorker,
  WsTarget,
} from './messages.js';
import { type Placement, placeFleet } from './placement.js';
import { LoadAgent, type ShardHandle } from './remote-shards.js';
import { intervalSaturation, lagSaturation, runSaturation } from './self-check.js';
import {
  deviceTrafficConfig,
  mergeTraffic,
  publisherTraffic,
  type TrafficResult,
} from './traffic/ledgers.js';

/** How long after each interval's end the coordinator waits for the workers' reports. */
const FLUSH_LAG_MS = 250;

/** What the load generator needs to know about the system under test. */
export interface LoadPlan {
  scenario: Scenario;
  /**
   * Where each block of global device indices connects; together they must
   * cover [0, devices.count + devices.reserve). Give this or `target`.
   */
  routes?: DeviceRoute[];
  /** One-route shorthand: every device connects here, binding `localAddresses`. Ignored when `routes` is given. */
  target?: WsTarget;
  /** API base URLs the publisher spreads its requests over (`setApiTargets` changes them). */
  httpUrls: string[];
  secret: string;
  apiKey: string;
  /** Interval of worker reports and of the timeline. Default 1000 ms. */
  reportIntervalMs?: number;
  /** Source addresses for device sockets with `target`; empty lets the kernel choose. */
  localAddresses?: string[];
  /** Called after the delivery deadline and before devices close (e.g. to read server counts). */
  beforeClose?: () => Promise<void>;
  /** Reads each node's connection count; called once per interval for the timeline. */
  sampleNodes?: () => Promise<Record<string, number>>;
  /** Where the shards go (see placement.ts); default: placed for this process's limits. */
  placement?: Placement;
}

/** One second (one report interval) of the run, as the coordinator saw it. */
export interface TimelinePoint {
  /** Seconds since the fleet started connecting. */
  t: number;
  phase: RunPhase;
  /** Devices held open now, as the load generator counts them. */
  open: number;
  /** Devices asked to connect so far (first attempts started, cumulative). */
  requested: number;
  /** Devices open at least once so far (cumulative). */
  established: number;
  connectAttempts: number;
  connectFailures: number;
  disconnects: number;
  /** Attempts that were not a device's first connect. */
  reconnectAttempts: number;
  /** Reconnect attempts that opened. */
  reconnects: number;
  /** Connections lost (periodic reconnects excluded). */
  losses: number;
  /** Periodic (own-initiative) reconnects. */
  periodic: number;
  /** Failed attempts this interval by reason (`refused`, `timeout`, `http_503`, ...). */
  failuresByReason: Record<string, number>;
  /** Device traffic counters this interval (`roomReceived`, `d2dSent`, ...). */
  traffic: Record<string, number>;
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
    /** Initial devices plus the reserve devices `connectMore` actually asked for. */
    requested: number;
    /** Devices that were open at least once. */
    established: number;
    heldAtEnd: number;
    /** Devices never open during the run (requested - established). */
    failed: number;
    /** Failed attempts (first connects and reconnects) by reason. */
    failuresByReason: Record<string, number>;
    closesByCode: Record<string, number>;
    /** Connection losses by cause: `heartbeat_timeout`, `goaway`, `code_<close code>`. */
    lossesByCause: Record<string, number>;
    /** Devices that were between connections (reconnecting) when the run ended. */
    reconnectingAtEnd: number;
  };
  /**
   * One triple per connection loss, all workers: [lost at, open again at,
   * attempts], times in seconds since the fleet started; -1 = never back.
   */
  drops: Float64Array;
  /** The node each loss in `drops` happened on ('' when the node never said: no hello). */
  dropNodes: string[];
  /** Devices that stopped reconnecting (`maxAttempts` reached, or a terminal close code). */
  gaveUp: number;
  ledger: DeliveryLedger;
  /** Per-kind ledgers (direct, indirect, room, d2d, combined). */
  traffic: TrafficResult;
  /**
   * Merged histograms by series: `push`, `connect`, `api`, and whatever else
   * the workers record (`reconnect`, `push@<region>`, `room`, `d2d`, ...).
   */
  histograms: Record<string, LatencyHistogram>;
  timeline: TimelinePoint[];
  generator: {
    valid: boolean;
    /** Why the result is invalid; empty when valid. */
    reasons: string[];
    /** Lag the generator had that did not reach enough samples to invalidate the result. */
    warnings: string[];
    workers: WorkerHealth[];
    skippedSends: number;
    /** How the fleet was spread over processes and threads, and why. */
    placement: PlacementSummary;
    /**
     * The load generator's processes (coordinator and agents) as /proc saw
     * them just before the fleet closed, all devices still held; set by the caller.
     */
    resources?: { processes: number; rssBytes: number; cpuSeconds: number };
  };
  /** Scheduled messages never sent because no device was connected when publishing began. */
  unaddressed: number;
  /** Frames devices received that were not readable pushes. */
  badFrames: number;
  /** Per-interval merged histograms, in time order. */
  intervals: IntervalHistograms[];
  /** Phase changes on the run's time axis. */
  markers: RunMarker[];
  /** Scheduled send times (s since start) of accepted direct/indirect pushes never delivered. */
  lostAtS: number[];
  /** Host-monotonic µs when the fleet started and when publishing started/ended. */
  marks: { startUs: number; publishStartUs: number; publishEndUs: number; endUs: number };
}

interface Accumulator {
  open: Map<number, number>;
  /** Per worker: devices open at least once so far. */
  established: Map<number, number>;
  connectAttempts: number;
  connectFailures: number;
  disconnects: number;
  reconnectAttempts: number;
  reconnects: number;
  losses: number;
  periodic: number;
  failuresByReason: Record<string, number>;
  traffic: Record<string, number>;
  sent: number;
  accepted: number;
  received: number;
  /** This interval's histograms by series (`push`, `connect`, `api`). */
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

/** The latency series every run records. */
export const RUN_SERIES = ['push', 'connect', 'api'] as const;

/** One report interval's merged histograms, for HdrHistogram interval logs. */
export interface IntervalHistograms {
  /** Interval start and end, ms since the fleet started. */
  startMs: number;
  endMs: number;
  histograms: Record<string, LatencyHistogram>;
}

/** A labelled instant (or span) on the run's time axis: a phase change or a fault. */
export interface RunMarker {
  /** Seconds since the fleet started. */
  t: number;
  kind: 'phase' | 'fault';
  label: string;
  /** End of a fault that lasts, seconds since the fleet started. */
  tEnd?: number;
  /** The timeline action (`kill-node`, `blackhole`, ...). */
  action?: string;
  /** What it hit (a node id, a region). */
  target?: string;
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
  /** The fleet's start time is fixed: host-monotonic µs, the timeline's t = 0. */
  started: [number];
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
  /** Per worker: its worst interval's lag and the reason it gives. */
  private readonly worstLag = new Map<string, number>();
  private readonly lagReasons = new Map<string, string>();
  /** Worker intervals that lagged past the limit, all workers. */
  private lateIntervals = 0;
  /** Latency samples of the whole run, and those recorded while the generator lagged. */
  private samplesAll = 0;
  private samplesLate = 0;
  private acc: Accumulator = this.freshAccumulator();
  private phase: RunPhase = 'connecting';
  private startUs = 0;
  private totalAccepted = 0;
  private totalReceived = 0;
  /** First connect attempts so far, all workers. */
  private requestedSoFar = 0;
  /** Device worker threads, in worker index order, once spawned. */
  private deviceThreads: ShardHandle[] = [];
  /** Load agent processes holding shards, when the fleet is placed over several. */
  private readonly agents: LoadAgent[] = [];
  /** Where the fleet's shards were placed, once `run` has decided. */
  placement: Placement | undefined;
  private publisherThread: Worker | undefined;
  /** Reserve devices each device worker has not opened yet. */
  private reserveLeft: number[] = [];
  /** Reserve devices `connectMore` asked for (capped by the reserve). */
  private requestedMore = 0;
  /** connectMore calls made before the fleet started. */
  private readonly pendingMore: Array<{ count: number; rateHz: number }> = [];

  constructor(private plan: LoadPlan) {
    super();
  }

  private freshAccumulator(): Accumulator {
    return {
      open: this.acc?.open ?? new Map(),
      established: this.acc?.established ?? new Map(),
      connectAttempts: 0,
      connectFailures: 0,
      disconnects: 0,
      reconnectAttempts: 0,
      reconnects: 0,
      losses: 0,
      periodic: 0,
      failuresByReason: {},
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

  private setPhase(phase: RunPhase): void {
    this.phase = phase;
    if (this.startUs > 0) {
      this.markers.push({
        t: Math.round(this.elapsedS() * 100) / 100,
        kind: 'phase',
        label: phase,
      });
    }
    this.emit('phase', phase);
  }

  /** Process ids of the load generator: this process and its agents. */
  loadPids(): number[] {
    return [process.pid, ...this.agents.flatMap((a) => (a.pid === undefined ? [] : [a.pid]))];
  }

  /** Seconds since the fleet started (0 before it has). */
  elapsedS(): number {
    return this.startUs > 0 ? Math.max(0, (monoNowUs() - this.startUs) / 1e6) : 0;
  }

  /** Adds a marker (a fault, usually) to the run's time axis. */
  mark(marker: RunMarker): void {
    this.markers.push(marker);
  }

  /**
   * Opens `count` more devices from the scenario's reserve, open-loop at
   * `rateHz` in total, split evenly over the device workers. Asks for no more
   * than the reserve has left; called before the fleet starts, it waits for the start.
   */
  connectMore(count: number, rateHz: number): void {
    if (this.startUs === 0 || this.deviceThreads.length === 0) {
      this.pendingMore.push({ count, rateHz });
      return;
    }
    if (this.phase === 'closing' || this.phase === 'done') return;
    const workers = this.deviceThreads.length;
    const want = Math.max(0, Math.floor(count));
    // Never before the fleet's own start: the reserve follows the initial ramp's clock.
    const atUs = Math.max(monoNowUs() + 10_000, this.startUs);
    let left = want;
    for (let i = 0; i < workers && left > 0; i++) {
      // Even split; the first (want mod workers) workers take one more.
      const share = Math.floor(want / workers) + (i < want % workers ? 1 : 0);
      const n = Math.min(share, this.reserveLeft[i] ?? 0, left);
      if (n <= 0) continue;
      this.reserveLeft[i] = (this.reserveLeft[i] ?? 0) - n;
      this.requestedMore += n;
      left -= n;
      this.deviceThreads[i]!.postMessage({
        type: 'connect-more',
        count: n,
        rateHz: want > 0 ? (rateHz * n) / want : rateHz,
        atUs,
      } satisfies ToWorker);
    }
  }

  /** Points the publisher at these API base URLs from now on (nodes come and go during chaos). */
  setApiTargets(urls: string[]): void {
    this.plan = { ...this.plan, httpUrls: [...urls] };
    this.publisherThread?.postMessage({ type: 'api-targets', urls: [...urls] } satisfies ToWorker);
  }

  /** The plan's routes, or one route from the `target` shorthand. */
  private routes(): DeviceRoute[] {
    if (this.plan.routes !== undefined) return this.plan.routes;
    const { scenario, target, localAddresses } = this.plan;
    if (target === undefined) {
      throw new PushbenchError(
        'PB_INTERNAL',
        'LoadPlan has neither routes nor target; give the coordinator where devices connect',
      );
    }
    return [
      {
        region: scenario.topology.regions[0]?.name ?? 'default',
        first: 0,
        count: scenario.devices.count + scenario.devices.reserve,
        host: target.host,
        port: target.port,
        path: target.path,
        localAddresses: localAddresses ?? [],
      },
    ];
  }

  /** Records a worker's interval health; true when that interval lagged past the limit. */
  private noteSelf(worker: string, self: SelfCheck): boolean {
    this.acc.maxElu = Math.max(this.acc.maxElu, self.elu);
    this.acc.maxLagP99Ms = Math.max(this.acc.maxLagP99Ms, self.lagP99Ms);
    const reason = intervalSaturation(worker, self);
    if (reason === undefined) return false;
    this.lateIntervals++;
    // One reason per worker: its worst interval.
    if (self.lagP99Ms > (this.worstLag.get(worker) ?? 0)) {
      this.worstLag.set(worker, self.lagP99Ms);
      this.lagReasons.set(worker, reason);
    }
    return true;
  }

  private flushInterval(): void {
    const a = this.acc;
    this.samplesAll += a.samples;
    this.samplesLate += a.publisherLate ? a.samples : a.lateSamples;
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
    let established = 0;
    for (const n of a.established.values()) established += n;
    this.requestedSoFar += a.connectAttempts - a.reconnectAttempts;
    const point: TimelinePoint = {
      t: Math.round((monoNowUs() - this.startUs - FLUSH_LAG_MS * 1000) / 1e5) / 10,
      phase: this.phase,
      open,
      requested: this.requestedSoFar,
      established,
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

  /** Merges a worker's snapshot into the run total and the current interval, creating the series on first sight. */
  private mergeInto(series: string, snapshot: string): number {
    this.histograms[series] ??= createLatencyHistogram();
    const count = mergeSnapshot(this.histograms[series], snapshot);
    this.acc.histograms[series] ??= createLatencyHistogram();
    mergeSnapshot(this.acc.histograms[series], snapshot);
    // `push@eu` repeats samples of `push`: count each sample once.
    return series.includes('@') ? 0 : count;
  }

  /** Merges a worker's interval histograms; the number of samples they hold. */
  private mergeAll(histograms: Record<string, string>): number {
    let samples = 0;
    for (const [series, snap] of Object.entries(histograms))
      samples += this.mergeInto(series, snap);
    return samples;
  }

  /** Runs the load to completion. Rejects with `PB_WORKER_FAILED` if a worker dies. */
  async run(): Promise<LoadResult> {
    const { scenario } = this.plan;
    const reportIntervalMs = this.plan.reportIntervalMs ?? 1000;
    const deviceWorkers = Math.max(1, Math.min(scenario.workers, scenario.devices.count));
    const workers: ShardHandle[] = [];
    const finals: DeviceFinal[] = [];
    let publisherFinal: PublisherFinal | undefined;
    const established: Int32Array[] = [];
    let rampsDone = 0;
    let ready = 0;

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
          established.push(msg.established);
          break;
        case 'device-interval':
          this.acc.open.set(msg.workerIndex, msg.open);
          this.acc.established.set(msg.workerIndex, msg.established);
          this.acc.connectAttempts += msg.connectAttempts;
          this.acc.connectFailures += msg.connectFailures;
          this.acc.disconnects += msg.disconnects;
          this.acc.reconnectAttempts += msg.reconnectAttempts;
          this.acc.reconnects += msg.reconnects;
          this.acc.losses += msg.losses;
          this.acc.periodic += msg.periodic;
          addCounts(this.acc.failuresByReason, msg.failuresByReason);
          addCounts(this.acc.traffic, msg.trafficCounters);
          this.acc.received += msg.received;
          this.totalReceived += msg.received;
          {
            const samples = this.mergeAll(msg.histograms);
            this.acc.samples += samples;
            if (this.noteSelf(name, msg.self)) this.acc.lateSamples += samples;
          }
          break;
        case 'device-final':
          this.samplesAll += this.mergeAll(msg.histograms);
          finals.push(msg);
          break;
        case 'publisher-interval':
          this.acc.sent += msg.sent;
          this.acc.accepted += msg.accepted;
          this.totalAccepted += msg.accepted;
          this.acc.samples += this.mergeAll(msg.histograms);
          if (this.noteSelf(name, msg.self)) this.acc.publisherLate = true;
          break;
        case 'publisher-final':
          this.samplesAll += this.mergeAll(msg.histograms);
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

    const watch = <W extends ShardHandle>(name: string, worker: W): W => {
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
    const spawn = (name: string, data: DeviceWorkerData | PublisherWorkerData): Worker =>
      watch(name, startWorkerBeside(import.meta.url, './worker', data));

    const { count: initial, reserve } = scenario.devices;
    const placement =
      this.plan.placement ??
      placeFleet(
        {
          devices: initial,
          reserve,
          threads: deviceWorkers,
          routes: this.routes(),
          ...(scenario.placement.devicesPerProcess !== null && {
            maxDevicesPerProcess: scenario.placement.devicesPerProcess,
          }),
          ...(scenario.placement.sourceAddresses !== null && {
            addressPool: scenario.placement.sourceAddresses,
          }),
        },
        processLimits(),
      );
    this.placement = placement;
    const traffic = deviceTrafficConfig(scenario, placement.shards.length);
    const shardData = placement.shards.map(
      (shard): DeviceWorkerData => ({
        role: 'devices',
        workerIndex: shard.index,
        firstDevice: shard.firstDevice,
        deviceCount: shard.deviceCount,
        reserveFirst: shard.reserveFirst,
        reserveCount: shard.reserveCount,
        // Every route, not just this shard's: the set of regions decides the `push@` series.
        routes: placement.routes,
        secret: this.plan.secret,
        tokenTtlSec: 24 * 3600,
        accounts: scenario.devices.accounts,
        connectRateHz:
          initial > 0 ? (scenario.devices.connectRateHz * shard.deviceCount) / initial : 0,
        connectTimeoutMs: scenario.devices.connectTimeoutMs,
        reportIntervalMs,
        reconnect: scenario.devices.reconnect,
        periodicReconnect: scenario.devices.periodicReconnect,
        heartbeatTimeoutMs: scenario.devices.heartbeatTimeoutMs,
        // One stream per shard: the scenario's seed replays every shard's choices.
        seed: (scenario.seed + Math.imul(shard.index + 1, 0x9e3779b1)) >>> 0,
        traffic,
      }),
    );
    const deviceThreads: ShardHandle[] = [];
    if (placement.processes === 1) {
      for (const data of shardData) {
        deviceThreads.push(
          watch(
            `device worker ${data.workerIndex}`,
            startWorkerBeside(import.meta.url, './worker', data, { leanHeap: true }),
          ),
        );
      }
    } else {
      for (let p = 0; p < placement.processes; p++) {
        const agent = new LoadAgent(
          p,
          shardData.filter((_, i) => placement.shards[i]!.process === p),
        );
        this.agents.push(agent);
        for (const handle of agent.handles()) {
          deviceThreads.push(watch(`device shard ${handle.shard} (agent ${p})`, handle));
        }
      }
    }
    for (const shard of placement.shards) this.reserveLeft.push(shard.reserveCount);
    this.deviceThreads = deviceThreads;
    const publisher = spawn('publisher', {
      role: 'publisher',
      httpUrls: this.plan.httpUrls,
      apiKey: this.plan.apiKey,
      ...publisherTraffic(scenario),
      maxInFlight: 10_000,
      requestTimeoutMs: 10_000,
      reportIntervalMs,
      seed: scenario.seed,
    });
    this.publisherThread = publisher;
    const send = (w: ShardHandle, msg: ToWorker) => w.postMessage(msg);

    let stopTicker: () => void = () => {};
    try {
      // Start only once every thread has loaded: a schedule that began while a
      // worker was still compiling would open with a burst of overdue connects.
      await until(() => ready === workers.length);
      // Give every thread its start time on the shared host clock.
      this.startUs = monoNowUs() + 50_000;
      this.intervalStartUs = this.startUs;
      this.emit('started', this.startUs);
      this.setPhase('connecting');
      for (const w of deviceThreads)
        send(w, { type: 'start', atUs: this.startUs, gridUs: this.startUs });
      for (const more of this.pendingMore.splice(0)) this.connectMore(more.count, more.rateHz);
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
      for (const w of deviceThreads) send(w, { type: 'publishing', atUs: publishStartUs });
      await until(() => publisherFinal !== undefined);
      // Devices send d2d messages on their own schedule: publishing lasts the
      // whole duration even when the publisher itself had nothing to send.
      const scheduledEndUs = publishStartUs + scenario.durationMs * 1000;
      while (monoNowUs() < scheduledEndUs) {
        await Promise.race([
          new Promise<void>((r) =>
            setTimeout(r, Math.min(100, (scheduledEndUs - monoNowUs()) / 1000)),
          ),
          failed$,
        ]);
      }
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

      return this.result(finals, publisherFinal!, {
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

  /**
   * Scheduled send times (s since start) of direct and indirect pushes that
   * were accepted and never delivered, so losses can be laid against faults.
   * Each kind's n-th message was due at publish start + n / rate.
   */
  private lostPushTimes(pub: PublisherFinal, delivered: Bitset, publishStartUs: number): number[] {
    const out: number[] = [];
    const { traffic } = this.plan.scenario;
    for (const kind of ['direct', 'indirect'] as const) {
      const k = pub.kinds[kind];
      const rate = traffic[kind].rateHz;
      if (!k || rate <= 0) continue;
      const accepted = new Bitset(k.accepted);
      let n = 0;
      new Bitset(k.seqs).forEach((seq) => {
        if (accepted.has(seq) && !delivered.has(seq)) {
          out.push(Math.round((publishStartUs + (n * 1e6) / rate - this.startUs) / 1e4) / 100);
        }
        n++;
      });
    }
    return out.sort((a, b) => a - b);
  }

  private result(
    finals: DeviceFinal[],
    pub: PublisherFinal,
    marks: LoadResult['marks'],
  ): LoadResult {
    const delivered = new Bitset();
    const late = new Bitset();
    let duplicates = 0;
    let heldAtEnd = 0;
    let established = 0;
    let requested = 0;
    let badFrames = 0;
    let gaveUp = 0;
    let reconnectingAtEnd = 0;
    const failuresByReason: Record<string, number> = {};
    const closesByCode: Record<string, number> = {};
    const lossesByCause: Record<string, number> = {};
    const workers: WorkerHealth[] = [];
    const drops = new Float64Array(finals.reduce((n, f) => n + f.drops.length, 0));
    let d = 0;
    const dropNodes: string[] = [];
    for (const f of finals.sort((a, b) => a.workerIndex - b.workerIndex)) {
      delivered.addAll(new Bitset(f.delivered));
      late.addAll(new Bitset(f.late));
      duplicates += f.duplicates;
      heldAtEnd += f.heldAtEnd;
      established += f.established;
      requested += f.requested;
      badFrames += f.badFrames;
      gaveUp += f.gaveUp;
      reconnectingAtEnd += f.abandonedAtFinish;
      addCounts(failuresByReason, f.connectFailuresByReason);
      addCounts(closesByCode, f.closesByCode);
      addCounts(lossesByCause, f.lossesByCause);
      for (const n of f.dropNodes) dropNodes.push(n >= 0 ? (f.nodeNames[n] ?? '') : '');
      for (let i = 0; i + 2 < f.drops.length; i += 3) {
        const back = f.drops[i + 1]!;
        drops[d++] = (f.drops[i]! - this.startUs) / 1e6;
        drops[d++] = back > 0 ? (back - this.startUs) / 1e6 : -1;
        drops[d++] = f.drops[i + 2]!;
      }
      workers.push({ worker: `devices-${f.workerIndex}`, ...f.self });
    }
    workers.push({ worker: 'publisher', ...pub.self });
    for (const reason of runSaturation(workers, pub.skipped)) this.reasons.add(reason);
    // The samples of the interval in progress were merged but never flushed.
    this.samplesAll += this.acc.samples;
    this.samplesLate += this.acc.publisherLate ? this.acc.samples : this.acc.lateSamples;
    const lag = lagSaturation({
      lateIntervals: this.lateIntervals,
      samples: this.samplesAll,
      lateSamples: this.samplesLate,
      worst: [...this.lagReasons.values()],
    });
    const ledger = reconcileLedger(
      {
        sent: pub.sent,
        accepted: new Bitset(pub.accepted),
        rejectedByStatus: pub.rejectedByStatus,
      },
      { delivered, late, duplicates },
    );
    return {
      lostAtS: this.lostPushTimes(pub, delivered, marks.publishStartUs),
      connections: {
        requested,
        established,
        heldAtEnd,
        failed: requested - established,
        failuresByReason,
        closesByCode,
        lossesByCause,
        reconnectingAtEnd,
      },
      drops,
      dropNodes,
      gaveUp,
      ledger,
      traffic: mergeTraffic(finals, pub),
      histograms: this.histograms,
      timeline: this.timeline,
      generator: {
        valid: this.reasons.size === 0 && lag.reasons.length === 0,
        reasons: [...lag.reasons, ...this.reasons],
        warnings: lag.warnings,
        workers,
        skippedSends: pub.skipped,
        placement: summarizePlacement(this.placement!, this.agents),
      },
      unaddressed: pub.noTarget,
      badFrames,
      intervals: this.intervals,
      markers: this.markers,
      marks,
    };
  }
}

/** Where the fleet ran, for the report. */
export interface PlacementSummary {
  processes: number;
  threadsPerProcess: number;
  /** Devices (initial + reserve) per process, in process order. */
  devicesByProcess: number[];
  /** Agent process ids (empty when the fleet ran in the coordinator's process). */
  agentPids: number[];
  /** Source addresses each route's devices bound, by region (empty: the kernel chose). */
  sourceAddresses: Record<string, string[]>;
  reasons: string[];
}

function summarizePlacement(placement: Placement, agents: LoadAgent[]): PlacementSummary {
  const devicesByProcess = new Array<number>(placement.processes).fill(0);
  for (const s of placement.shards) devicesByProcess[s.process]! += s.deviceCount + s.reserveCount;
  const sourceAddresses: Record<string, string[]> = {};
  for (const r of placement.routes) {
    sourceAddresses[r.region] = [
      ...new Set([...(sourceAddresses[r.region] ?? []), ...r.localAddresses]),
    ];
  }
  return {
    processes: placement.processes,
    threadsPerProcess: placement.threadsPerProcess,
    devicesByProcess,
    agentPids: agents.flatMap((a) => (a.pid === undefined ? [] : [a.pid])),
    sourceAddresses,
    reasons: placement.reasons,
  };
}

/** Adds `from`'s counts into `into`. */
function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}
