/**
 * The coordinator: places the fleet's device shards and starts them with the
 * publisher, drives the phases (connect, publish, drain, close), folds the
 * workers' reports (run-fold.ts) and joins their finals into the load result
 * (load-result.ts). It talks to the system under test only through its
 * workers' sockets.
 */
import { EventEmitter } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { everyOnGrid, monoNowUs } from '../core/clock.js';
import { PushbenchError } from '../core/errors.js';
import { processLimits } from '../core/machine.js';
import { GENERATOR_AHEAD } from '../core/priority.js';
import type { LoadResult, RunMarker, RunPhase, TimelinePoint } from '../core/result.js';
import { startWorkerBeside } from '../core/runtime.js';
import type { Scenario } from '../scenarios/schema.js';
import type { AgentListener } from './join/listener.js';
import { proportionalSplit } from './join/placement.js';
import { buildLoadResult, summarizePlacement } from './load-result.js';
import type { DeviceRoute, FromWorker, ToWorker, WsTarget } from './messages.js';
import { type Placement, placeScenario } from './placement.js';
import type { ShardHandle } from './remote-shards.js';
import { FLUSH_LAG_MS, RunFold } from './run-fold.js';
import { type ShardHost, shardData, startShardHosts } from './shards.js';
import { publisherTraffic } from './traffic/ledgers.js';

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
  /**
   * Load agents on other hosts (`--agents`) that run every device shard:
   * `processesOf[k]` are agent k's processes in `placement` (join/placement.ts).
   */
  agents?: { listener: AgentListener; processesOf: number[][] };
  /**
   * The network namespace of each region's client host, for a placement on
   * client hosts (the kernel engine: placement.ts `placeOnClientHosts`).
   */
  clientNamespaces?: Map<string, string>;
}

/**
 * Drives one run of the load generator. Emits `phase` and `interval` events
 * for progress displays, `started` once the fleet's t = 0 is fixed, and
 * `publishing` with the moment publishing begins.
 */
export class Coordinator extends EventEmitter<{
  phase: [RunPhase];
  interval: [TimelinePoint];
  /** The fleet's start time is fixed: host-monotonic µs, the timeline's t = 0. */
  started: [number];
  /** The initial ramp resolved: publishing starts at this host-monotonic µs. */
  publishing: [number];
}> {
  private readonly fold = new RunFold();
  private readonly markers: RunMarker[] = [];
  private readonly signal = new RunSignal();
  private phase: RunPhase = 'connecting';
  private startUs = 0;
  /** Every worker and shard handle, to terminate at the end. */
  private readonly handles: ShardHandle[] = [];
  /** Where the device shards run, and their handles in worker index order. */
  private hosts: ShardHost[] = [];
  private deviceShards: ShardHandle[] = [];
  /** Where the fleet's shards were placed, once `run` has decided. */
  placement: Placement | undefined;
  private publisherThread: Worker | undefined;
  /** Reserve devices each device shard has not opened yet. */
  private reserveLeft: number[] = [];
  /** connectMore calls made before the fleet started. */
  private readonly pendingMore: Array<{ count: number; rateHz: number }> = [];

  constructor(private plan: LoadPlan) {
    super();
  }

  /** Process ids of the load generator: this process and its agents. */
  loadPids(): number[] {
    return [process.pid, ...this.hosts.flatMap((h) => h.pids())];
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
   * `rateHz` in total, split over the device workers by what each has left
   * (evenly when their reserves are equal; see {@link splitByReserve}). Asks for no more
   * than the reserve has left; called before the fleet starts, it waits for the start.
   */
  connectMore(count: number, rateHz: number): void {
    if (this.startUs === 0 || this.deviceShards.length === 0) {
      this.pendingMore.push({ count, rateHz });
      return;
    }
    if (this.phase === 'closing' || this.phase === 'done') return;
    const want = Math.max(0, Math.floor(count));
    // Never before the fleet's own start: the reserve follows the initial ramp's clock.
    const atUs = Math.max(monoNowUs() + 10_000, this.startUs);
    const shares = splitByReserve(want, this.reserveLeft);
    for (const [i, n] of shares.entries()) {
      if (n <= 0) continue;
      this.reserveLeft[i] = (this.reserveLeft[i] ?? 0) - n;
      this.deviceShards[i]!.postMessage({
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

  /** Runs the load to completion. Rejects with `PB_WORKER_FAILED` if a worker dies. */
  async run(): Promise<LoadResult> {
    this.startWorkers();
    let stopTicker: () => void = () => {};
    try {
      // Start only once every thread has loaded: a schedule that began while a
      // worker was still compiling would open with a burst of overdue connects.
      await this.signal.until(() => this.fold.ready === this.handles.length);
      stopTicker = this.connectPhase();
      await this.signal.until(() => this.fold.rampsDone === this.deviceShards.length);
      const publishStartUs = this.startPublishing();
      const publishEndUs = await this.publishPhase(publishStartUs);
      await this.drainPhase(publishEndUs);
      await this.closePhase();
      stopTicker();
      stopTicker = () => {};
      this.flushInterval();
      this.setPhase('done');
      return buildLoadResult({
        scenario: this.plan.scenario,
        fold: this.fold,
        publisher: this.fold.publisherFinal!,
        markers: this.markers,
        placement: summarizePlacement(
          this.placement!,
          this.hosts.flatMap((h) => h.pids()),
        ),
        marks: { startUs: this.startUs, publishStartUs, publishEndUs, endUs: monoNowUs() },
      });
    } finally {
      stopTicker();
      this.phase = 'done';
      await Promise.all(this.handles.map((w) => w.terminate()));
    }
  }

  /** Places the fleet (unless the plan brings a placement) and starts its shards and the publisher. */
  private startWorkers(): void {
    const { scenario } = this.plan;
    const reportIntervalMs = this.plan.reportIntervalMs ?? 1000;
    const placement =
      this.plan.placement ?? placeScenario(scenario, this.routes(), processLimits());
    this.placement = placement;
    const agents = this.plan.agents;
    // Agents on other hosts ramp side by side, each host's processes one after another.
    const agentOf = new Map<number, number>();
    for (const [k, processes] of (agents?.processesOf ?? []).entries())
      for (const p of processes) agentOf.set(p, k);
    const data = shardData(
      {
        scenario,
        secret: this.plan.secret,
        reportIntervalMs,
        ...(agents && { ramp: { groupOf: (p: number) => `agent ${agentOf.get(p)}`, lanes: 1 } }),
      },
      placement,
    );
    this.hosts =
      agents === undefined
        ? startShardHosts(placement, data, (region) => this.plan.clientNamespaces?.get(region))
        : agents.listener.start(
            data,
            placement.shards.map((s) => s.process),
            agents.processesOf,
          );
    for (const host of this.hosts) {
      for (const { name, handle } of host.shards) {
        this.deviceShards.push(this.watch(name, handle, host.group));
      }
    }
    this.reserveLeft = placement.shards.map((s) => s.reserveCount);
    this.publisherThread = this.watch(
      'publisher',
      startWorkerBeside(import.meta.url, './worker', {
        role: 'publisher',
        ...(scenario.topology.nodeNice > 0 && { aheadBy: GENERATOR_AHEAD }),
        httpUrls: this.plan.httpUrls,
        apiKey: this.plan.apiKey,
        ...publisherTraffic(scenario),
        maxInFlight: 10_000,
        requestTimeoutMs: 10_000,
        reportIntervalMs,
        seed: scenario.seed,
      }),
    );
  }

  /** Folds a worker's messages and fails the run when it fails, crashes or exits early. */
  private watch<W extends ShardHandle>(name: string, worker: W, group?: string): W {
    worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'fatal') {
        this.signal.fail(
          new PushbenchError('PB_WORKER_FAILED', `${name} failed: ${msg.message.split('\n')[0]}`),
        );
      } else {
        this.fold.apply(name, msg, group);
      }
      this.signal.wake();
    });
    worker.on('error', (err) =>
      this.signal.fail(
        // A lost agent says which, and ends the run with its own exit code.
        err instanceof PushbenchError && err.code === 'PB_AGENT_LOST'
          ? err
          : new PushbenchError('PB_WORKER_FAILED', `${name} crashed: ${err.message}`),
      ),
    );
    worker.on('exit', (code) => {
      if (code !== 0 && this.phase !== 'done') {
        this.signal.fail(
          new PushbenchError('PB_WORKER_FAILED', `${name} exited with code ${code}`),
        );
      }
    });
    this.handles.push(worker);
    return worker;
  }

  /** Fixes t = 0 on the shared host clock, starts every shard's ramp and the interval ticker; returns the ticker's stop. */
  private connectPhase(): () => void {
    const reportIntervalMs = this.plan.reportIntervalMs ?? 1000;
    this.startUs = monoNowUs() + 50_000;
    this.fold.begin(this.startUs);
    this.emit('started', this.startUs);
    this.setPhase('connecting');
    for (const w of this.deviceShards) {
      w.postMessage({ type: 'start', atUs: this.startUs, gridUs: this.startUs } satisfies ToWorker);
    }
    for (const more of this.pendingMore.splice(0)) this.connectMore(more.count, more.rateHz);
    // Flush a little after each grid point so the workers' reports for it have arrived.
    return everyOnGrid(this.startUs, reportIntervalMs, () => this.flushInterval(), FLUSH_LAG_MS);
  }

  /** Gives the publisher the devices the ramp left open and a start time; returns that time. */
  private startPublishing(): number {
    this.setPhase('publishing');
    const targets = Int32Array.from(this.fold.established.flatMap((a) => Array.from(a)));
    const atUs = monoNowUs() + 10_000;
    this.publisherThread!.postMessage({
      type: 'start',
      atUs,
      gridUs: this.startUs,
      targets,
    } satisfies ToWorker);
    for (const w of this.deviceShards)
      w.postMessage({ type: 'publishing', atUs } satisfies ToWorker);
    this.emit('publishing', atUs);
    return atUs;
  }

  /** Waits for the publisher's final report and the scheduled end of publishing; returns when it ended. */
  private async publishPhase(publishStartUs: number): Promise<number> {
    await this.signal.until(() => this.fold.publisherFinal !== undefined);
    // Devices send d2d messages on their own schedule: publishing lasts the
    // whole duration even when the publisher itself had nothing to send.
    const scheduledEndUs = publishStartUs + this.plan.scenario.durationMs * 1000;
    while (monoNowUs() < scheduledEndUs) {
      await this.signal.sleep(Math.min(100, (scheduledEndUs - monoNowUs()) / 1000));
    }
    return monoNowUs();
  }

  /** Waits until every accepted message has arrived, or the delivery deadline; then tells the devices. */
  private async drainPhase(publishEndUs: number): Promise<void> {
    this.setPhase('draining');
    const deadlineUs = publishEndUs + this.plan.scenario.deliveryDeadlineMs * 1000;
    while (this.fold.totalReceived < this.fold.totalAccepted && monoNowUs() < deadlineUs) {
      await this.signal.wakeOrSleep(50);
    }
    for (const w of this.deviceShards) w.postMessage({ type: 'deadline' } satisfies ToWorker);
  }

  /** Lets the caller read the servers, then closes every device and waits for the shards' finals. */
  private async closePhase(): Promise<void> {
    await this.plan.beforeClose?.();
    this.setPhase('closing');
    for (const w of this.deviceShards) w.postMessage({ type: 'finish' } satisfies ToWorker);
    await this.signal.until(() => this.fold.finals.length === this.deviceShards.length);
  }

  private flushInterval(): void {
    const point = this.fold.flush(this.phase);
    // Sample the nodes' own counts; the point is completed when the answer arrives.
    this.plan.sampleNodes?.().then(
      (nodes) => {
        point.nodes = nodes;
      },
      () => {},
    );
    this.emit('interval', point);
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
}

/**
 * The run's wake-ups and its failure: waits wake when a worker message
 * arrives, and every wait rejects at once when the run has failed.
 */
class RunSignal {
  private readonly waiters: Array<() => void> = [];
  private readonly failed: Promise<never>;
  private reject: (err: Error) => void = () => {};

  constructor() {
    this.failed = new Promise<never>((_, reject) => {
      this.reject = reject;
    });
    this.failed.catch(() => {});
  }

  /** Fails the run: every wait, now and later, rejects with `err` (the first failure wins). */
  fail(err: Error): void {
    this.reject(err);
  }

  /** Wakes the waits, which check their condition again. */
  wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `cond` holds, checked at each wake-up. */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) {
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), this.failed]);
    }
  }

  /** Resolves after `ms`. */
  sleep(ms: number): Promise<void> {
    return Promise.race([new Promise<void>((r) => setTimeout(r, ms)), this.failed]);
  }

  /** Resolves at the next wake-up, or after `ms`. */
  wakeOrSleep(ms: number): Promise<void> {
    return Promise.race([
      new Promise<void>((r) => this.waiters.push(r)),
      new Promise<void>((r) => setTimeout(r, ms)),
      this.failed,
    ]);
  }
}

/**
 * Splits `want` devices over shards in proportion to what each has left of
 * its reserve (never more than that): shards with equal reserves share evenly,
 * the first ones taking one more; shards of regions with unequal shares (client
 * hosts) keep their regions' proportions.
 */
export function splitByReserve(want: number, left: readonly number[]): number[] {
  const held = left.map((l) => Math.max(0, l));
  // Never more than all have; each share then stays within what its shard has left.
  return proportionalSplit(
    Math.max(
      0,
      Math.min(
        want,
        held.reduce((a, b) => a + b, 0),
      ),
    ),
    held,
  );
}
