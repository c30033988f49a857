import { monoNowUs } from '../core/clock.js';
import type { FaultScope, TimelineAction } from '../scenarios/schema.js';
import type { Cluster } from './cluster.js';
import type { NetworkFault } from './network/types.js';

/** What the director may ask of the device fleet and publisher. */
export interface FleetControl {
  /** Open more devices (a `connect` action). */
  connectMore(count: number, rateHz: number): void;
  /** The nodes whose HTTP API the publisher may use changed. */
  setApiTargets(urls: string[]): void;
}

/** One thing that happened to the system under test, scripted or not. */
export interface FaultRecord {
  /** Marker text. */
  label: string;
  /** The timeline action, or `crash` for a node that fell over on its own. */
  action: TimelineAction['action'] | 'crash';
  /** What it hit: a node id, `region <name>`, or the fleet. */
  target: string;
  /** Seconds since the fleet started, when it was applied. */
  t: number;
  /** When it was lifted (`for` elapsed, or `heal`); null = lasted to the end of the run. */
  tEnd: number | null;
  /** Nodes it started or stopped (scale-up/down). */
  nodes?: string[];
  /** Set when the action could not be carried out. */
  error?: string;
  /** False when the run ended before its time came. */
  fired: boolean;
}

function scopeTarget(scope: FaultScope): string {
  return 'nodeId' in scope ? scope.nodeId : `region ${scope.region}`;
}

function sameScope(a: FaultScope, b: FaultScope): boolean {
  return 'nodeId' in a
    ? 'nodeId' in b && a.nodeId === b.nodeId
    : 'region' in b && a.region === b.region;
}

/** The network fault an action puts on the fabric, if it is one. */
function networkFault(a: TimelineAction): NetworkFault | undefined {
  switch (a.action) {
    case 'latency':
      return { kind: 'latency', scope: a.scope, delayMs: a.delayMs, jitterMs: a.jitterMs };
    case 'blackhole':
      return { kind: 'blackhole', scope: a.scope };
    case 'reset':
      return { kind: 'reset', scope: a.scope };
    case 'conntrack-limit':
      return { kind: 'conntrack-limit', scope: a.scope, table: a.table };
    case 'admission-rate':
      return { kind: 'admission-rate', scope: a.scope, ratePerSec: a.ratePerSec, burst: a.burst };
    case 'bandwidth':
      return { kind: 'bandwidth', scope: a.scope, bitsPerSec: a.bitsPerSec };
    case 'partition':
      return { kind: 'partition', scope: a.scope, from: a.from };
    default:
      return undefined;
  }
}

/**
 * Plays a scenario's timeline against a running cluster: each action at its
 * time from the fleet's start, as real signals to node processes or faults on
 * the network fabric, each recorded (start, end, target) for the report's
 * markers and per-fault summaries.
 */
export class ChaosDirector {
  private readonly faults: FaultRecord[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Network faults in force, with their fabric id and record. */
  private readonly active: Array<{ id: string; scope: FaultScope; record: FaultRecord }> = [];
  private startUs = 0;
  /** When the initial ramp resolved (host-monotonic µs), once it has. */
  private rampUs: number | undefined;
  private stopped = false;

  constructor(
    private readonly timeline: TimelineAction[],
    private readonly cluster: Cluster,
    private readonly fleet: FleetControl,
    private readonly onRecord: (record: FaultRecord) => void = () => {},
  ) {
    for (const a of timeline) {
      this.faults.push({
        label: a.label,
        action: a.action,
        target: this.targetOf(a),
        t: a.atMs / 1000,
        tEnd: null,
        fired: false,
      });
    }
  }

  private targetOf(a: TimelineAction): string {
    switch (a.action) {
      case 'kill-node':
      case 'restart-node':
      case 'stop-node':
        return a.node;
      case 'scale-up':
      case 'scale-down':
        return `region ${a.region}`;
      case 'connect':
        return 'fleet';
      case 'datastore-down':
      case 'datastore-restart':
        return 'datastore';
      case 'datastore-latency':
        return a.nodeId === null ? 'datastore' : `datastore of ${a.nodeId}`;
      default:
        return scopeTarget(a.scope);
    }
  }

  private nowS(): number {
    return Math.round((monoNowUs() - this.startUs) / 1e4) / 100;
  }

  /**
   * Schedules every action counted from the start relative to `startUs`
   * (host-monotonic µs, the fleet's t=0); those `after: "ramp"` wait for
   * {@link rampResolved}.
   */
  start(startUs: number): void {
    this.startUs = startUs;
    this.schedule(startUs, (a) => a.after !== 'ramp');
  }

  /**
   * The initial ramp resolved and publishing begins at `publishUs`
   * (host-monotonic µs): schedules the actions `after: "ramp"` from then, and
   * puts their planned time on the run's clock.
   */
  rampResolved(publishUs: number): void {
    if (this.stopped || this.rampUs !== undefined) return;
    this.rampUs = publishUs;
    this.schedule(publishUs, (a) => a.after === 'ramp');
  }

  private schedule(fromUs: number, which: (a: TimelineAction) => boolean): void {
    this.timeline.forEach((action, i) => {
      if (!which(action)) return;
      const record = this.faults[i]!;
      record.t = Math.round((fromUs - this.startUs) / 1e4 + action.atMs / 10) / 100;
      const delayMs = Math.max(0, (fromUs + action.atMs * 1000 - monoNowUs()) / 1000);
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void this.fire(action, record);
      }, delayMs);
      this.timers.add(timer);
    });
  }

  /** A node fell over on its own (e.g. past its capacity with overload `crash`). */
  noteCrash(nodeId: string, detail: string): void {
    const record: FaultRecord = {
      label: `crash ${nodeId}`,
      action: 'crash',
      target: nodeId,
      t: this.startUs > 0 ? this.nowS() : 0,
      tEnd: null,
      fired: true,
      ...(detail && { error: detail }),
    };
    this.faults.push(record);
    this.onRecord(record);
    // The publisher must stop calling a node that is gone, as a real caller would.
    if (!this.stopped) this.fleet.setApiTargets(this.cluster.apiUrls());
  }

  private async fire(action: TimelineAction, record: FaultRecord): Promise<void> {
    if (this.stopped) return;
    record.fired = true;
    record.t = this.nowS();
    this.onRecord(record);
    try {
      await this.apply(action, record);
    } catch (err) {
      record.error = (err as Error).message.split('\n')[0];
    }
    if (!this.stopped) this.fleet.setApiTargets(this.cluster.apiUrls());
  }

  private async apply(action: TimelineAction, record: FaultRecord): Promise<void> {
    switch (action.action) {
      case 'kill-node':
        await this.cluster.kill(action.node);
        return;
      case 'stop-node':
        await this.cluster.stopNode(action.node);
        return;
      case 'scale-up':
        // Nodes take a while to boot; the record ends when they are behind the balancer.
        record.nodes = await this.cluster.scaleUp(action.region, action.nodes);
        record.tEnd = this.nowS();
        return;
      case 'restart-node':
        await this.cluster.restart(action.node);
        record.tEnd = this.nowS();
        return;
      case 'scale-down':
        record.nodes = await this.cluster.scaleDown(action.region, action.nodes, action.graceful);
        return;
      case 'connect':
        this.fleet.connectMore(action.devices, action.rateHz);
        return;
      case 'datastore-latency': {
        const id = this.cluster.datastoreLatency(
          action.nodeId,
          action.delayMs,
          action.jitterMs,
          action.link,
        );
        if (action.forMs !== null) {
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            if (this.stopped) return;
            record.tEnd = this.nowS();
            this.cluster.clearDatastoreLatency(id);
          }, action.forMs);
          this.timers.add(timer);
        }
        return;
      }
      case 'datastore-down':
        await this.cluster.datastoreDown();
        return;
      case 'datastore-restart':
        // The record ends once Redis accepts connections again.
        await this.cluster.datastoreRestart(action.data);
        record.tEnd = this.nowS();
        return;
      case 'heal': {
        await this.cluster.clearScope(action.scope);
        const t = this.nowS();
        for (const a of this.active.splice(0)) {
          if (sameScope(a.scope, action.scope)) a.record.tEnd ??= t;
          else this.active.push(a);
        }
        record.tEnd = t;
        return;
      }
      default: {
        const fault = networkFault(action);
        if (!fault) return;
        const id = await this.cluster.applyFault(fault);
        if (fault.kind === 'reset') {
          record.tEnd = record.t;
          return;
        }
        const entry = { id, scope: fault.scope, record };
        this.active.push(entry);
        const forMs = 'forMs' in action ? action.forMs : null;
        if (forMs !== null) {
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            if (this.stopped) return;
            const at = this.active.indexOf(entry);
            if (at < 0) return;
            this.active.splice(at, 1);
            record.tEnd = this.nowS();
            void this.cluster.clearFault(id).catch(() => {});
          }, forMs);
          this.timers.add(timer);
        }
      }
    }
  }

  /** Cancels what has not fired yet; returns every record (unfired ones say so). */
  stop(): FaultRecord[] {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    return this.records();
  }

  records(): FaultRecord[] {
    return [...this.faults].sort((a, b) => a.t - b.t);
  }
}
