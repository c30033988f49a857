/**
 * Where a fleet's device shards run. A placement (placement.ts) decides how
 * many processes and threads; a shard host starts its share and gives the
 * coordinator one {@link ShardHandle} per shard, so the coordinator drives
 * every kind alike. Two kinds today: threads in the coordinator's process, and
 * load-agent processes on this host (remote-shards.ts). An agent on another
 * host is a third kind behind the same interface: it names its shards, lists
 * its processes for /proc readings (or none it can read), and relays messages.
 */

import { PushbenchError } from '../core/errors.js';
import { startWorkerBeside } from '../core/runtime.js';
import type { Scenario } from '../scenarios/schema.js';
import type { DeviceWorkerData } from './messages.js';
import type { Placement } from './placement.js';
import { LoadAgent, type ShardHandle } from './remote-shards.js';
import { deviceTrafficConfig } from './traffic/ledgers.js';

/** One running shard and the name the run's messages and failures use for it. */
export interface NamedShard {
  name: string;
  handle: ShardHandle;
}

/** A place that runs device shards. */
export interface ShardHost {
  /** The shards it runs, in worker index order. */
  readonly shards: NamedShard[];
  /** Process ids on this host to read from /proc (empty: the coordinator's own process). */
  pids(): number[];
  /** A name whose devices' latency the run also keeps apart (a load agent on another host). */
  readonly group?: string;
}

/** Settings every shard shares, from the load plan. */
export interface ShardSettings {
  scenario: Scenario;
  secret: string;
  reportIntervalMs: number;
}

/**
 * When each shard opens its initial devices: the processes of one client host
 * (or of the whole fleet, without client hosts) ramp one after another, each
 * at the host's whole share of the connect rate, and the threads of one
 * process together. The run's schedule is the same open model; only which
 * process makes each connect differs. One process connecting at 2,000/s pays
 * far less than thirteen at 154/s each, every one woken cold for each connect
 * (a 250,000-device hold: the agents took ~0.75 cores for 2,000 connects/s
 * against ~0.1 for one process, bench/RESULTS.md).
 */
export function rampPlan(
  placement: Placement,
  connectRateHz: number,
  initial: number,
): { rateHz: number; delayUs: number }[] {
  const hostOf = (p: number) => placement.clientHosts?.[p] ?? '';
  const byProcess = new Map<number, number>();
  const byHost = new Map<string, number>();
  for (const s of placement.shards) {
    byProcess.set(s.process, (byProcess.get(s.process) ?? 0) + s.deviceCount);
    byHost.set(hostOf(s.process), (byHost.get(hostOf(s.process)) ?? 0) + s.deviceCount);
  }
  // Where each process's ramp starts: after the earlier processes of its host have opened theirs.
  const startOf = new Map<number, number>();
  const opened = new Map<string, number>();
  for (const p of [...byProcess.keys()].sort((a, b) => a - b)) {
    startOf.set(p, opened.get(hostOf(p)) ?? 0);
    opened.set(hostOf(p), (opened.get(hostOf(p)) ?? 0) + byProcess.get(p)!);
  }
  return placement.shards.map((s) => {
    const host = hostOf(s.process);
    const hostRate = initial > 0 ? (connectRateHz * byHost.get(host)!) / initial : 0;
    const inProcess = byProcess.get(s.process)!;
    return {
      rateHz: inProcess > 0 ? (hostRate * s.deviceCount) / inProcess : 0,
      delayUs: hostRate > 0 ? Math.round((startOf.get(s.process)! / hostRate) * 1e6) : 0,
    };
  });
}

/** Each shard's start-up data: its blocks of devices and when and how fast it opens them. */
export function shardData(settings: ShardSettings, placement: Placement): DeviceWorkerData[] {
  const { scenario, secret, reportIntervalMs } = settings;
  const initial = scenario.devices.count;
  const traffic = deviceTrafficConfig(scenario, placement.shards.length);
  const ramps = rampPlan(placement, scenario.devices.connectRateHz, initial);
  return placement.shards.map((shard, i) => ({
    role: 'devices',
    workerIndex: shard.index,
    firstDevice: shard.firstDevice,
    deviceCount: shard.deviceCount,
    reserveFirst: shard.reserveFirst,
    reserveCount: shard.reserveCount,
    // Every route, not just this shard's: the set of regions decides the `push@` series.
    routes: placement.routes,
    secret,
    tokenTtlSec: 24 * 3600,
    accounts: scenario.devices.accounts,
    connectRateHz: ramps[i]!.rateHz,
    ...(ramps[i]!.delayUs > 0 && { rampDelayUs: ramps[i]!.delayUs }),
    connectTimeoutMs: scenario.devices.connectTimeoutMs,
    reportIntervalMs,
    reconnect: scenario.devices.reconnect,
    periodicReconnect: scenario.devices.periodicReconnect,
    heartbeatTimeoutMs: scenario.devices.heartbeatTimeoutMs,
    registration: scenario.devices.registration,
    // One stream per shard: the scenario's seed replays every shard's choices.
    seed: (scenario.seed + Math.imul(shard.index + 1, 0x9e3779b1)) >>> 0,
    traffic,
  }));
}

/**
 * Starts the placed shards: as threads here when the placement has one
 * process, else one agent per process. A placement on client hosts runs every
 * process as an agent in its region's host namespace (`namespaceOf`).
 */
export function startShardHosts(
  placement: Placement,
  data: DeviceWorkerData[],
  namespaceOf?: (region: string) => string | undefined,
): ShardHost[] {
  const groups: DeviceWorkerData[][] = [];
  for (let p = 0; p < placement.processes; p++) {
    groups.push(data.filter((_, i) => placement.shards[i]!.process === p));
  }
  const hosts = placement.clientHosts;
  if (hosts === undefined) return startShardGroups(groups);
  return groups.map((group, p) => {
    const region = hosts[p]!;
    const namespace = namespaceOf?.(region);
    if (namespace === undefined) {
      throw new PushbenchError('PB_INTERNAL', `no client host for region ${region}`);
    }
    return new AgentShards(p, group, namespace, region);
  });
}

/**
 * Starts shards grouped by process: one group runs as threads of this process,
 * several as one load-agent process each (an agent on another host starts its
 * share this way too).
 */
export function startShardGroups(groups: DeviceWorkerData[][]): ShardHost[] {
  if (groups.length === 1) return [new ThreadShards(groups[0]!)];
  return groups.map((group, p) => new AgentShards(p, group));
}

/** Shards as worker threads of the coordinator's own process. */
class ThreadShards implements ShardHost {
  readonly shards: NamedShard[];

  constructor(data: DeviceWorkerData[]) {
    this.shards = data.map((d) => ({
      name: `device worker ${d.workerIndex}`,
      handle: startWorkerBeside(import.meta.url, './worker', d, { leanHeap: true }),
    }));
  }

  pids(): number[] {
    return [];
  }
}

/** Shards in a load-agent process on this host. */
class AgentShards implements ShardHost {
  readonly shards: NamedShard[];
  private readonly agent: LoadAgent;

  /** `namespace`: the client host it runs on, region `region`'s (the kernel engine). */
  constructor(index: number, data: DeviceWorkerData[], namespace?: string, region?: string) {
    this.agent = new LoadAgent(index, data, namespace);
    const where =
      region === undefined ? `agent ${index}` : `agent ${index}, ${region}'s client host`;
    this.shards = this.agent
      .handles()
      .map((handle) => ({ name: `device shard ${handle.shard} (${where})`, handle }));
  }

  pids(): number[] {
    return this.agent.pid === undefined ? [] : [this.agent.pid];
  }
}
