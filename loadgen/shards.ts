/**
 * Where a fleet's device shards run. A placement (placement.ts) decides how
 * many processes and threads; a shard host starts its share and gives the
 * coordinator one {@link ShardHandle} per shard, so the coordinator drives
 * every kind alike. Two kinds today: threads in the coordinator's process, and
 * load-agent processes on this host (remote-shards.ts). An agent on another
 * host is a third kind behind the same interface: it names its shards, lists
 * its processes for /proc readings (or none it can read), and relays messages.
 */

import { availableParallelism } from 'node:os';
import { PushbenchError } from '../core/errors.js';
import { GENERATOR_AHEAD } from '../core/priority.js';
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
  /** How the processes ramp (see {@link rampPlan}); default one lane per two cores of this host. */
  ramp?: { groupOf?: (process: number) => string; lanes?: number };
}

/**
 * When each shard opens its initial devices. The processes of one group (a
 * load-agent host with `--agents`, a region's client host on the kernel engine,
 * else the whole fleet) ramp in `lanes` lanes, the processes of a lane one
 * after another, each at its lane's whole share of the group's rate; the
 * threads of one process together. The run's schedule is the same open model
 * and every lane ends at the same time; only which process makes each connect
 * differs. One process connecting at 2,000/s costs far less than thirteen at
 * 154/s each, every one woken cold for each connect (a 60,000-device hold on 4
 * agents here: 26.4 s of agent CPU against 33.8, bench/RESULTS.md). Lanes
 * default to one per two cores, so a bigger box still ramps on all its cores.
 */
export function rampPlan(
  placement: Placement,
  connectRateHz: number,
  initial: number,
  options: { groupOf?: (process: number) => string; lanes?: number } = {},
): { rateHz: number; delayUs: number }[] {
  const groupOf = options.groupOf ?? ((p: number) => placement.clientHosts?.[p] ?? '');
  const lanes = Math.max(1, Math.floor(options.lanes ?? 1));
  const byProcess = new Map<number, number>();
  for (const s of placement.shards) {
    byProcess.set(s.process, (byProcess.get(s.process) ?? 0) + s.deviceCount);
  }
  const processes = [...byProcess.keys()].sort((a, b) => a - b);
  // Each process's lane: its place among its group's processes, round the lanes.
  const laneOf = new Map<number, string>();
  const seen = new Map<string, number>();
  for (const p of processes) {
    const g = groupOf(p);
    const k = seen.get(g) ?? 0;
    seen.set(g, k + 1);
    laneOf.set(p, `${g}\u0000${k % lanes}`);
  }
  const byLane = new Map<string, number>();
  for (const p of processes)
    byLane.set(laneOf.get(p)!, (byLane.get(laneOf.get(p)!) ?? 0) + byProcess.get(p)!);
  // Where each process's ramp starts: after the earlier processes of its lane.
  const startOf = new Map<number, number>();
  const opened = new Map<string, number>();
  for (const p of processes) {
    const lane = laneOf.get(p)!;
    startOf.set(p, opened.get(lane) ?? 0);
    opened.set(lane, (opened.get(lane) ?? 0) + byProcess.get(p)!);
  }
  return placement.shards.map((s) => {
    const lane = laneOf.get(s.process)!;
    const laneRate = initial > 0 ? (connectRateHz * byLane.get(lane)!) / initial : 0;
    const inProcess = byProcess.get(s.process)!;
    return {
      rateHz: inProcess > 0 ? (laneRate * s.deviceCount) / inProcess : 0,
      delayUs: laneRate > 0 ? Math.round((startOf.get(s.process)! / laneRate) * 1e6) : 0,
    };
  });
}

/** Each shard's start-up data: its blocks of devices and when and how fast it opens them. */
export function shardData(settings: ShardSettings, placement: Placement): DeviceWorkerData[] {
  const { scenario, secret, reportIntervalMs } = settings;
  const initial = scenario.devices.count;
  const traffic = deviceTrafficConfig(scenario, placement.shards.length);
  const ramps = rampPlan(placement, scenario.devices.connectRateHz, initial, {
    lanes: Math.floor(availableParallelism() / 2),
    ...settings.ramp,
  });
  // The whole initial ramp is due to end here; a shard reports what it left open no
  // earlier (fleet.ts), so every shard's snapshot for the publisher is taken at its end.
  const rampEndUs =
    scenario.devices.connectRateHz > 0
      ? Math.round((initial / scenario.devices.connectRateHz) * 1e6)
      : 0;
  const staggered = ramps.some((r) => r.delayUs > 0);
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
    ...(staggered && { rampEndUs }),
    connectTimeoutMs: scenario.devices.connectTimeoutMs,
    reportIntervalMs,
    // With the nodes behind the generator, its threads run ahead of the harness's other
    // processes too, where they may (core/priority.ts).
    ...(scenario.topology.nodeNice > 0 && { aheadBy: GENERATOR_AHEAD }),
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
