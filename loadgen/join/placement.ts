/**
 * Places a fleet over load agents on other hosts: each agent gets a contiguous
 * block of the initial devices and one of the reserve, in proportion to what
 * it offered to hold, then its block is placed on its own host's limits (its
 * open-file limit decides how many processes, its cores how many threads) by
 * the same placeFleet as a local fleet. Shard, process and device indices are
 * global and unique across the run. Pure.
 */
import { PushbenchError } from '../../core/errors.js';
import type { DeviceRoute } from '../messages.js';
import { type Placement, type PlacementRequest, placeFleet, type Shard } from '../placement.js';
import type { HostFacts } from './protocol.js';

/** One agent, as placement sees it. */
export interface AgentSlot {
  name: string;
  facts: HostFacts;
}

/** The fleet over the agents: one placement for the coordinator, and each agent's processes in it. */
export interface AgentPlacement {
  placement: Placement;
  /** Per agent (in the order given): its process indices in `placement`, in order. */
  processesOf: number[][];
  /** Per agent: its initial devices [first, first + count) and its reserve block. */
  blocks: Array<{ first: number; count: number; reserveFirst: number; reserveCount: number }>;
}

/** `total` split over `weights` in proportion, whole numbers that sum to `total`. */
export function proportionalSplit(total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum <= 0) return weights.map(() => 0);
  const exact = weights.map((w) => (total * w) / sum);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  // The largest remainders take the leftovers, first agent first on ties.
  const order = exact
    .map((x, i) => ({ i, r: x - Math.floor(x) }))
    .sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    out[i]!++;
    left--;
  }
  return out;
}

/**
 * Places `req` (devices, reserve, threads ignored: each agent runs a thread per
 * core) over `agents`. Routes keep their destinations; their source addresses
 * are dropped, since an agent's kernel picks its own. Throws `PB_LIMIT` when
 * the agents together offer fewer devices than the run needs.
 */
export function placeOverAgents(
  req: PlacementRequest,
  agents: AgentSlot[],
  heapBytes: number,
): AgentPlacement {
  const total = req.devices + req.reserve;
  const offered = agents.reduce((a, b) => a + b.facts.maxDevices, 0);
  if (agents.length === 0) throw new PushbenchError('PB_USAGE', 'no agents to place the fleet on');
  if (offered < total) {
    throw new PushbenchError(
      'PB_LIMIT',
      `the agents offer ${fmt(offered)} devices (${agents.map((a) => `${a.name} ${fmt(a.facts.maxDevices)}`).join(', ')}) and the run needs ${fmt(total)}: add agents, or run fewer devices`,
    );
  }
  const weights = agents.map((a) => a.facts.maxDevices);
  const devices = proportionalSplit(req.devices, weights);
  const reserve = proportionalSplit(req.reserve, weights);
  const routes: DeviceRoute[] = req.routes.map((r) => ({ ...r, localAddresses: [] }));
  const shards: Shard[] = [];
  const processesOf: number[][] = [];
  const blocks: AgentPlacement['blocks'] = [];
  const reasons: string[] = [];
  let first = 0;
  let reserveFirst = req.devices;
  let processBase = 0;
  let devicesPerProcess = 0;
  let threadsPerProcess = 1;
  agents.forEach((agent, k) => {
    const d = devices[k]!;
    const r = reserve[k]!;
    blocks.push({ first, count: d, reserveFirst, reserveCount: r });
    if (d + r === 0) {
      processesOf.push([]);
      return;
    }
    const local = placeFleet(
      { devices: d, reserve: r, threads: Math.max(1, Math.min(agent.facts.cores, d + r)), routes },
      {
        openFiles: agent.facts.openFiles,
        heapBytes,
        ephemeralPorts: null,
      },
    );
    const base = shards.length;
    for (const s of local.shards) {
      shards.push({
        index: base + s.index,
        process: processBase + s.process,
        firstDevice: first + s.firstDevice,
        deviceCount: s.deviceCount,
        reserveFirst: reserveFirst + (s.reserveFirst - d),
        reserveCount: s.reserveCount,
      });
    }
    processesOf.push(Array.from({ length: local.processes }, (_, p) => processBase + p));
    reasons.push(
      `agent ${agent.name}: devices ${fmt(first)}..${fmt(first + d - 1)}${r > 0 ? ` and reserve ${fmt(reserveFirst)}..${fmt(reserveFirst + r - 1)}` : ''} (${fmt(d + r)} of its ${fmt(agent.facts.maxDevices)}) in ${local.processes} process${local.processes === 1 ? '' : 'es'} x ${local.threadsPerProcess} thread${local.threadsPerProcess === 1 ? '' : 's'}`,
    );
    processBase += local.processes;
    devicesPerProcess = Math.max(devicesPerProcess, local.devicesPerProcess);
    threadsPerProcess = Math.max(threadsPerProcess, local.threadsPerProcess);
    first += d;
    reserveFirst += r;
  });
  return {
    placement: {
      processes: processBase,
      threadsPerProcess,
      shards,
      routes,
      devicesPerProcess,
      reasons,
    },
    processesOf,
    blocks,
  };
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}
