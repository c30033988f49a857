/**
 * Preflight: before anything starts, what a run needs (sockets, open files,
 * ephemeral ports, memory) against what this machine allows, with where the
 * fleet and the nodes will be placed. Anything that would cap the run halfway
 * is refused up front with what caps it and how to lift it.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { PushbenchError } from '../core/errors.js';
import { formatBytes, formatCount, formatMs } from '../core/units.js';
import type { DeviceRoute } from '../loadgen/messages.js';
import {
  type Placement,
  PORT_HEADROOM,
  PROCESS_FD_OVERHEAD,
  type ProcessLimits,
  placeScenario,
} from '../loadgen/placement.js';
import { firstAttemptSpreadMs } from '../loadgen/reconnect.js';
import type { Scenario } from '../scenarios/schema.js';
import { homeByRegion } from '../scenarios/sections/devices.js';
import { decisionRegions, needsDecisionPoint, routesByHealth } from '../topology/kernel/engine.js';
import { haproxyProcesses } from '../topology/kernel/haproxy.js';
import { MAX_RELAYS, relaysFor } from '../topology/network/relays.js';
import {
  expectedConnectionsPerNode,
  NODE_FD_OVERHEAD,
  nodeProcesses,
} from '../topology/node-placement.js';

/**
 * Machine memory one held connection costs, all told, for planning: load
 * generator (~2.5 KB), node (~4 KB), kernel socket buffers and slab of both
 * ends (~10 KB), with room for buffers in flight. A planning figure, not a
 * measurement: `npm run bench` measures the real ones.
 */
export const BYTES_PER_CONNECTION = 24 * 1024;

/** Memory of one idle Node process (load agent or node worker), for planning. */
export const BYTES_PER_PROCESS = 64 * 2 ** 20;

/**
 * CPU one device connect costs at both ends together (load agent and node,
 * user and kernel), in microseconds, for planning. Re-measured with
 * `bench/connect-cost.ts` (bare, and asking for the hello frame as the fleet's
 * devices do) on the two 2-core KVM guests this project runs on (Node 20,
 * bench/RESULTS.md): an Intel Xeon read 128-135 µs bare; an AMD EPYC, 2-2.5x
 * slower, 230-360 bare and 250-400 with the hello. A scenario's device costs
 * more than the bench's (its token signed, registry and presence calls through
 * a multi-process node's hub, the close handshake). Planning must not
 * under-plan on the slower box: there the 250,000-device hold at 2,000
 * connects/s, which this figure puts at 1.67 cores with its heartbeats (over
 * the 1.40 that fit), was warned about and ended INVALID, as warned; on the
 * Xeon the same run was valid and the warning early.
 */
export const CPU_US_PER_CONNECT = 600;

/**
 * What a full TLS handshake adds to a connect at both ends, µs, for planning
 * (`topology.tls`): `bench/tls-cost.ts` on the AMD EPYC box read +418 µs at
 * the node and +723 µs at the client over a plain connect (EC P-256, TLS 1.3,
 * Node 20); a resumed one +232 and +447. The planning figure is the full one:
 * a run's first connects, and every connect without resumption, are full.
 */
export const CPU_US_PER_TLS_HANDSHAKE = 1200;

/**
 * CPU of one heartbeat (the node's ping, the device's pong), both ends, µs,
 * for planning: `bench/connect-cost.ts` read 18.7-19.3 µs on the Xeon and
 * 41.7-49.2 µs on the AMD box (the slower one sets the figure).
 */
export const CPU_US_PER_HEARTBEAT = 50;

/**
 * CPU of each kind of message over the whole box (publisher, nodes, hub,
 * network fabric, device), µs, for planning. Measured here on 2026-12-05 with
 * `five-nines` (2 nodes behind the userland fabric, 2,000 devices) and one kind
 * at a time for 20 s, as busy jiffies of the whole machine from /proc/stat in
 * the steady part of publishing minus the same run with no traffic (0.18
 * cores): 1,500 direct pushes/s took 0.79 cores, 4,000 room deliveries/s
 * (40 room messages/s to 100 members each) 0.34, 400 d2d messages/s 0.65.
 * An HTTP push pays the publisher's request, the node's HTTP parse, a registry
 * lookup and often a forward to the device's node through the hub; a room
 * message is framed once and written to each member; a d2d message goes from
 * a device through its node, a lookup, a forward and a status back.
 */
export const CPU_US_PER_MESSAGE = {
  /** One direct or indirect push (its HTTP request, routing and delivery). */
  push: 530,
  /** One room delivery (one member receiving one room message). */
  roomDelivery: 85,
  /** One device-to-device message with its status. */
  d2d: 1600,
} as const;

/**
 * What the builtin balancers' relay processes add on the kernel engine
 * (topology/network/relays.ts), µs, for planning: each relayed connect is
 * accepted by a relay, decided over IPC and connected onward; each heartbeat's
 * ping and pong and each delivered message cross a relay. Measured here
 * (bench/RESULTS.md, nineteenth session): `bench/relay-cost.ts 4|7 4500 1000`
 * put the relays' own CPU at 287-389 µs per connect with one accepting, and a
 * hold of 24,000 devices behind 4 relays took 0.11-0.23 cores of relay for
 * 2,400 heartbeats/s (46-96 µs each).
 */
export const RELAY_CPU_US = { connect: 350, heartbeat: 75, message: 40 } as const;

/**
 * Share of the cores a run may plan to use before the preflight warns: the
 * generator needs slack, or its event-loop delay turns into measured latency
 * and the self-check marks the run invalid.
 */
export const CPU_PLAN_SHARE = 0.7;

/** What the machine allows, read at start. */
export interface MachineLimits extends ProcessLimits {
  /** MemAvailable, bytes; null when unknown. */
  memoryAvailableBytes: number | null;
  /** System-wide open files still free (fs.file-max - allocated); null when unknown. */
  systemFilesFree: number | null;
  /** Cores this process may use (`os.availableParallelism()`); null when unknown. */
  cores: number | null;
}

/** One line of the preflight table. */
export interface PreflightCheck {
  /** What is needed, e.g. `open files, load generator`. */
  what: string;
  need: number;
  allowed: number | null;
  ok: boolean;
  /** Said when it is not ok: what caps the run and how to lift it. */
  lift?: string;
  /** How `need` and `allowed` read; default a count. */
  unit?: 'count' | 'bytes' | 'cores' | 'seconds';
  /** An estimate: when not ok the run still goes, with this check as a warning. */
  estimate?: boolean;
  /**
   * Whose load a CPU estimate is: the generator's machine (default; over it,
   * an invalid run names it among its reasons) or the nodes under their quota
   * (only ever a warning: a throttled node is what the run measures).
   */
  about?: 'machine' | 'nodes';
}

/** The preflight's result: placements and every check. */
export interface PreflightResult {
  placement: Placement;
  /** Worker processes per node, by region. */
  nodeProcesses: Record<string, number>;
  checks: PreflightCheck[];
  /** The checks that failed. Empty when the run can go. */
  problems: PreflightCheck[];
  /** Estimates that did not fit (CPU): the run goes, but will likely be saturated. */
  warnings: PreflightCheck[];
}

function readMeminfoAvailable(): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m?.[1] ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function readSystemFilesFree(): number | null {
  try {
    const [allocated, , max] = readFileSync('/proc/sys/fs/file-nr', 'utf8').trim().split(/\s+/);
    return Number(max) - Number(allocated);
  } catch {
    return null;
  }
}

/** Reads the machine's limits now. */
export function machineLimits(process: ProcessLimits): MachineLimits {
  return {
    ...process,
    memoryAvailableBytes: readMeminfoAvailable(),
    systemFilesFree: readSystemFilesFree(),
    cores: availableParallelism(),
  };
}

/**
 * The scenario as `engine` runs it: on the kernel engine each region's devices
 * run on a client host of the region's own, so they are numbered region by
 * region (the shards then hold one region each); elsewhere as written, each
 * region's devices interleaved so every shard carries every region alike.
 */
export function onEngine(scenario: Scenario, engine: 'userland' | 'kernel'): Scenario {
  return engine === 'kernel' ? { ...scenario, devices: homeByRegion(scenario.devices) } : scenario;
}

/** `routes` over the blocks of `blocks`: each block takes its region's route (host, port, addresses). */
function routesOver(routes: DeviceRoute[], blocks: Scenario['devices']['regions']): DeviceRoute[] {
  return blocks.map((b) => {
    const like = routes.find((r) => r.region === b.region) ?? routes[0];
    if (!like) throw new PushbenchError('PB_INTERNAL', `no route for region ${b.region}`);
    return { ...like, first: b.first, count: b.count };
  });
}

/**
 * Checks a run against the limits. `routes` are where devices connect (the
 * cluster's `deviceRoutes`, or a stand-in with the same blocks before the
 * cluster exists). Pure: every figure comes from the arguments.
 */
export function checkRun(
  scenario: Scenario,
  routes: DeviceRoute[],
  limits: MachineLimits,
  /** The network engine the run will use (topology/kernel/engine.ts). Default userland. */
  engine: 'userland' | 'kernel' = 'userland',
  /**
   * The fleet placed on load agents on other hosts (`--agents`,
   * loadgen/join/placement.ts): each agent checked its own host, so only this
   * machine's side (nodes, fabric, its end of each socket) is checked here.
   */
  remote?: Placement,
): PreflightResult {
  const { count, reserve } = scenario.devices;
  const devices = count + reserve;
  // On the kernel engine each region's devices run on its own client host, numbered
  // region by region (run() numbers them so before it gets here; other callers may not).
  const placement =
    remote ??
    (engine === 'kernel'
      ? placeScenario(
          onEngine(scenario, engine),
          routesOver(routes, onEngine(scenario, engine).devices.regions),
          limits,
          true,
        )
      : placeScenario(scenario, routes, limits));
  const checks: PreflightCheck[] = [];
  const files = limits.openFiles;
  const ulimit = (n: number) => `raise it with \`ulimit -n ${n}\` where the hard limit allows`;

  // Load generator: each process holds its devices' sockets.
  if (remote === undefined) {
    const devicesByProcess = new Array<number>(placement.processes).fill(0);
    for (const s of placement.shards)
      devicesByProcess[s.process]! += s.deviceCount + s.reserveCount;
    const busiest = Math.max(0, ...devicesByProcess);
    checks.push({
      what: `open files, busiest load-generator process (of ${placement.processes})`,
      need: busiest + PROCESS_FD_OVERHEAD,
      allowed: files,
      ok: files === null || busiest + PROCESS_FD_OVERHEAD <= files,
    });
  }

  // On the kernel engine no process of ours relays bytes; HAProxy does, two sockets per
  // connection of its region, under the same per-process limit: a region that needs
  // more gets more HAProxy processes on its port (SO_REUSEPORT), each within the limit.
  if (scenario.topology.balanced && engine === 'kernel') {
    for (const r of scenario.topology.regions.filter((x) => x.balancer.engine === 'haproxy')) {
      const regionDevices = scenario.devices.regions
        .filter((b) => b.region === r.name)
        .reduce((a, b) => a + b.count, 0);
      const processes = haproxyProcesses(regionDevices, files);
      const need = 2 * Math.ceil(regionDevices / processes) + PROCESS_FD_OVERHEAD;
      checks.push({
        what: `open files, busiest HAProxy process of region ${r.name} (of ${processes}; 2 sockets per device)`,
        need,
        allowed: files,
        ok: files === null || need <= files,
      });
    }
  }
  // The builtin balancers on the kernel engine decide in one process; relay processes
  // carry the bytes, each filled to 75 % of what its open files allow (2 per device).
  let relays = 0;
  let relayed = 0;
  if (engine === 'kernel' && needsDecisionPoint(scenario)) {
    // With a global entry (health routing) every device passes the relays.
    const decided = decisionRegions(scenario);
    relayed = scenario.devices.regions
      .filter((b) => routesByHealth(scenario) || decided.some((r) => r.name === b.region))
      .reduce((a, b) => a + b.count, 0);
    relays = relaysFor(relayed, files);
    const ok = relays <= MAX_RELAYS;
    checks.push({
      what: `relay processes of the builtin balancers (${formatCount(Math.ceil(relayed / relays))} devices each, 2 open files per device)`,
      need: relays,
      allowed: MAX_RELAYS,
      ok,
      ...(!ok && {
        lift: `${ulimit(2 * Math.ceil(relayed / MAX_RELAYS) + PROCESS_FD_OVERHEAD)}, or use balancer.engine "haproxy" (docs/network.md)`,
      }),
    });
  }
  // The network fabric relays every device's connection in one process: two sockets each.
  if (scenario.topology.balanced && engine === 'userland') {
    const need = 2 * devices + PROCESS_FD_OVERHEAD;
    const ok = files === null || need <= files;
    checks.push({
      what: 'open files, network fabric (balancers, faults; 2 sockets per device)',
      need,
      allowed: files,
      ok,
      ...(!ok && {
        lift: `the fabric is one process: ${ulimit(need)}, or run at most ${formatCount(Math.floor(((files ?? 0) - PROCESS_FD_OVERHEAD) / 2))} devices, or use topology.network "kernel" (docs/network.md), or drop balancers and faults (one node per region, no timeline) so devices connect to nodes directly`,
      }),
    });
  }

  // Nodes: processes enough for their expected connections.
  const procs: Record<string, number> = {};
  for (const region of scenario.topology.regions) {
    const expected = expectedConnectionsPerNode(scenario, region.name);
    const n = nodeProcesses(region.profile, expected, files);
    procs[region.name] = n;
    if (region.profile.openFiles !== null) continue; // a profile's file limit is the experiment
    const need = Math.ceil(expected / n) + NODE_FD_OVERHEAD;
    const ok = files === null || need <= files;
    checks.push({
      what: `open files, busiest process of a ${region.name} node (${n} process${n === 1 ? '' : 'es'}, ~${formatCount(expected)} connections)`,
      need,
      allowed: files,
      ok,
      ...(!ok && {
        lift: `give the region's profile \`processes: ${Math.ceil(expected / Math.max(1, (files ?? 0) - NODE_FD_OVERHEAD))}\` (or leave it out to choose automatically), or ${ulimit(need)}`,
      }),
    });
  }

  // Ephemeral ports: per source address of each route (an agent's are its own).
  if (limits.ephemeralPorts !== null && remote === undefined) {
    const usable = Math.floor(limits.ephemeralPorts * PORT_HEADROOM);
    for (const route of placement.routes) {
      const addresses = Math.max(1, route.localAddresses.length);
      const need = Math.ceil(route.count / addresses);
      const ok = need <= usable;
      checks.push({
        what: `ephemeral ports per source address, ${route.region} (${addresses} address${addresses === 1 ? '' : 'es'})`,
        need,
        allowed: usable,
        ok,
        ...(!ok && {
          lift:
            route.localAddresses.length > 0
              ? `this route's ${addresses} source addresses are fixed (they identify the region to the global entry): run at most ${formatCount(usable * addresses)} devices in ${route.region}`
              : `list more addresses in \`placement.sourceAddresses\`, or widen net.ipv4.ip_local_port_range`,
        }),
      });
    }
  }

  // Memory, all told: sockets of both ends, processes.
  const nodeProcs = scenario.topology.regions.reduce((a, r) => a + r.nodes * procs[r.name]!, 0);
  const localLoad = remote === undefined ? placement.processes : 0;
  const processMemory =
    (localLoad + nodeProcs + (scenario.topology.balanced ? 1 : 0) + relays) * BYTES_PER_PROCESS;
  // With agents elsewhere, this machine holds the servers' end of each connection only.
  const perDevice = remote === undefined ? BYTES_PER_CONNECTION : BYTES_PER_CONNECTION / 2;
  const memoryNeed = devices * perDevice + processMemory;
  const memOk = limits.memoryAvailableBytes === null || memoryNeed <= limits.memoryAvailableBytes;
  checks.push({
    what: `memory, all processes and kernel sockets (~${formatBytes(BYTES_PER_CONNECTION)} per device)`,
    unit: 'bytes',
    need: memoryNeed,
    allowed: limits.memoryAvailableBytes,
    ok: memOk,
    ...(!memOk && {
      lift: `run at most ${formatCount(Math.max(0, Math.floor(((limits.memoryAvailableBytes ?? 0) - processMemory) / perDevice)))} devices here, or free memory`,
    }),
  });

  // System-wide file table: both ends of every connection, twice more through the fabric.
  const systemNeed =
    devices * (scenario.topology.balanced ? 4 : 2) - (remote === undefined ? 0 : devices);
  const sysOk = limits.systemFilesFree === null || systemNeed <= limits.systemFilesFree;
  checks.push({
    what: 'open files, system-wide (fs.file-max)',
    need: systemNeed,
    allowed: limits.systemFilesFree,
    ok: sysOk,
    ...(!sysOk && { lift: `raise fs.file-max (sysctl -w fs.file-max=${systemNeed * 2})` }),
  });

  if (limits.cores !== null) {
    const plan = cpuPlan(scenario, limits.cores, remote !== undefined, relayed);
    checks.push(cpuCheck(scenario, plan), ...herdChecks(scenario, plan));
  }
  checks.push(...nodeQuotaChecks(scenario));
  checks.push(...waveChecks(scenario));

  return {
    placement,
    nodeProcesses: procs,
    checks,
    problems: checks.filter((c) => !c.ok && !c.estimate),
    warnings: checks.filter((c) => !c.ok && c.estimate),
  };
}

/**
 * Messages per second of each kind the scenario's traffic asks for, at full
 * strength: pushes (direct and indirect), room publishes (one HTTP request
 * each) and their deliveries (one per member), and d2d messages.
 */
function messageRates(scenario: Scenario): {
  push: number;
  roomPublish: number;
  roomDelivery: number;
  d2d: number;
} {
  const t = scenario.traffic;
  const devices = scenario.devices.count + scenario.devices.reserve;
  const perRoom = t.rooms.count > 0 ? (devices * t.rooms.perDevice) / t.rooms.count : 0;
  return {
    push: t.direct.rateHz + t.indirect.rateHz,
    roomPublish: t.rooms.rateHz,
    roomDelivery: t.rooms.rateHz * perRoom,
    d2d: t.d2d.rateHz,
  };
}

/**
 * The CPU the run asks of this machine, per kind of work, from the planning
 * figures above: what each connect costs (both ends, the relays where devices
 * cross them, halved when the devices run on agents elsewhere), and what the
 * held fleet costs every second (heartbeats, traffic, periodic reconnects).
 */
interface CpuPlan {
  cores: number;
  /** Cores a run may plan to use ({@link CPU_PLAN_SHARE} of them). */
  allowed: number;
  /** Per connect on this machine, µs (relays included, devices' half when elsewhere). */
  perConnectUs: number;
  /** The held fleet's cores: heartbeats, traffic, periodic reconnects, relays. */
  steadyCores: number;
  heartbeatHz: number;
  messageHz: number;
  periodicHz: number;
  /** The parenthesis every CPU line starts with: what is counted, on which share. */
  counted: string;
}

function cpuPlan(
  scenario: Scenario,
  cores: number,
  /** The devices run on agents elsewhere: this machine carries the nodes' half (planned as half). */
  serversOnly: boolean,
  /** Devices whose connections cross the builtin balancers' relays (kernel engine). */
  relayedDevices: number,
): CpuPlan {
  const share = serversOnly ? 0.5 : 1;
  const devices = scenario.devices.count + scenario.devices.reserve;
  const heartbeatMs = Math.min(
    ...scenario.topology.regions.map((r) => r.profile.heartbeatIntervalMs),
  );
  const heartbeatHz = (devices * 1000) / heartbeatMs;
  const rates = messageRates(scenario);
  const messageHz = rates.push + rates.roomDelivery + rates.d2d;
  const trafficUs =
    (rates.push + rates.roomPublish) * CPU_US_PER_MESSAGE.push +
    rates.roomDelivery * CPU_US_PER_MESSAGE.roomDelivery +
    rates.d2d * CPU_US_PER_MESSAGE.d2d;
  // The relays run on this machine whoever holds the devices: not halved with agents elsewhere.
  const relayedShare = devices > 0 ? Math.min(1, relayedDevices / devices) : 0;
  const perConnectUs =
    share * (CPU_US_PER_CONNECT + (scenario.topology.tls ? CPU_US_PER_TLS_HANDSHAKE : 0)) +
    relayedShare * RELAY_CPU_US.connect;
  const periodicHz = periodicReconnectHz(scenario.devices.periodicReconnect, devices);
  const relayUs =
    relayedShare * (heartbeatHz * RELAY_CPU_US.heartbeat + messageHz * RELAY_CPU_US.message);
  const steadyCores =
    (share * (heartbeatHz * CPU_US_PER_HEARTBEAT + trafficUs) +
      periodicHz * perConnectUs +
      relayUs) /
    1e6;
  return {
    cores,
    allowed: cores * CPU_PLAN_SHARE,
    perConnectUs,
    steadyCores,
    heartbeatHz,
    messageHz,
    periodicHz,
    counted: `${serversOnly ? "this machine's side (devices on agents)" : 'both ends'}${relayedDevices > 0 ? ' and relays' : ''}`,
  };
}

/**
 * The CPU the fleet's ramp asks of this machine, both ends together: the
 * fleet connecting at its rate while the devices already held take their
 * heartbeats and the traffic flows. An estimate from the planning figures
 * above; the run goes whatever it says, but when it exceeds
 * {@link CPU_PLAN_SHARE} of the cores the result will likely be saturated, and
 * saying so before the run beats an INVALID verdict after it.
 */
function cpuCheck(scenario: Scenario, plan: CpuPlan): PreflightCheck {
  const { allowed, steadyCores, perConnectUs, periodicHz } = plan;
  const connectHz = scenario.devices.connectRateHz;
  const need = (connectHz * perConnectUs) / 1e6 + steadyCores;
  const ok = need <= allowed;
  const fitHz = Math.floor(((allowed - steadyCores) * 1e6) / perConnectUs / 100) * 100;
  return {
    what: `cpu estimate, ${plan.counted} (${formatCount(connectHz)} ${scenario.topology.tls ? 'TLS ' : ''}connects/s, ${periodicHz > 0 ? `${formatCount(Math.round(periodicHz))} periodic reconnects/s, ` : ''}${formatCount(Math.round(plan.heartbeatHz))} heartbeats/s, ${formatCount(Math.round(plan.messageHz))} msgs/s; ${Math.round(CPU_PLAN_SHARE * 100)}% of ${plan.cores} cores)`,
    unit: 'cores',
    estimate: true,
    need,
    allowed,
    ok,
    ...(!ok && {
      lift:
        fitHz >= 100
          ? `expect a saturated generator (an INVALID result); lower --connect-rate to about ${formatCount(fitHz)}, or run the nodes on another machine`
          : `expect a saturated generator (an INVALID result): ${periodicHz > 0 ? 'periodic reconnects, ' : ''}heartbeats and traffic alone exceed it; ${periodicHz > 0 ? 'lengthen devices.periodicReconnect.every, ' : ''}lengthen topology.heartbeatInterval, lower the traffic, or use fewer devices`,
    }),
  };
}

/** The devices one timeline action drops at once, and how many nodes of their region remain to take them. */
export interface Herd {
  label: string;
  region: string;
  lost: number;
  /** Nodes of the region still up: the herd reconnects to them. */
  nodes: number;
}

/**
 * The herds the timeline makes: a `kill-node`, a `scale-down` that kills, a
 * `reset` of a node or a region drop their devices at one moment, and each
 * reconnects through its region's balancer. A node's devices are its even share of the
 * region's initial devices over its initial nodes (an estimate: scale-ups and
 * earlier faults move them). A kill that leaves its region no node makes no
 * herd until a node comes back, and is left out.
 */
export function timelineHerds(scenario: Scenario): Herd[] {
  const regions = scenario.topology.regions;
  const devicesOf = (region: string) =>
    scenario.devices.regions.filter((b) => b.region === region).reduce((a, b) => a + b.count, 0);
  const regionOfNode = (id: string) =>
    regions.find((r) => id.startsWith(`${r.name}-`) && /^\d+$/.test(id.slice(r.name.length + 1)));
  const out: Herd[] = [];
  const push = (
    label: string,
    region: (typeof regions)[number] | undefined,
    hit: number,
    left: number,
  ) => {
    if (!region || left < 1 || region.nodes < 1) return;
    const lost = Math.round((devicesOf(region.name) * Math.min(hit, region.nodes)) / region.nodes);
    if (lost > 0) out.push({ label, region: region.name, lost, nodes: left });
  };
  for (const a of scenario.timeline) {
    if (a.action === 'kill-node') {
      const r = regionOfNode(a.node);
      push(a.label, r, 1, (r?.nodes ?? 0) - 1);
    } else if (a.action === 'scale-down' && !a.graceful) {
      const r = regions.find((x) => x.name === a.region);
      push(a.label, r, a.nodes, (r?.nodes ?? 0) - a.nodes);
    } else if (a.action === 'reset') {
      const r =
        'nodeId' in a.scope
          ? regionOfNode(a.scope.nodeId)
          : regions.find((x) => x.name === (a.scope as { region: string }).region);
      push(a.label, r, 'nodeId' in a.scope ? 1 : (r?.nodes ?? 0), r?.nodes ?? 0);
    }
  }
  return out;
}

/**
 * The time a herd has to connect: its devices' first attempts spread over the
 * reconnect policy's first window, and each waits up to
 * `devices.connectTimeout` before it gives up and tries again, adding to the
 * load; a herd that times out can turn into a storm that never ends (the
 * seeds' thundering herd). Planned to be served within half the timeout, the
 * other half kept for the box's noise: node-kill at 20,000 devices on the
 * kernel engine, whose 5,000 are due within 5.5 s (at the edge of two cores
 * with no margin), left 1,993-4,647 never back in 4 runs with a 5 s timeout
 * and brought all back in 4 of 5 with 10 s (bench/RESULTS.md, twenty-second
 * session); at 10,000 it passes.
 */
export function herdDeadlineMs(scenario: Scenario): { spreadMs: number; deadlineMs: number } {
  const spreadMs = firstAttemptSpreadMs(scenario.devices.reconnect);
  return { spreadMs, deadlineMs: spreadMs + scenario.devices.connectTimeoutMs / 2 };
}

/**
 * The CPU each herd asks of this machine: its devices connected within
 * {@link herdDeadlineMs} while the rest of the fleet is held and the traffic
 * flows. The ramp's check cannot see this: a herd's rate is set by the
 * reconnect policy and the connect timeout, not by `--connect-rate`.
 */
function herdChecks(scenario: Scenario, plan: CpuPlan): PreflightCheck[] {
  const { spreadMs, deadlineMs } = herdDeadlineMs(scenario);
  return timelineHerds(scenario).map((h) => {
    const hz = (h.lost * 1000) / deadlineMs;
    const need = plan.steadyCores + (hz * plan.perConnectUs) / 1e6;
    const ok = need <= plan.allowed;
    return {
      what: `cpu estimate, ${plan.counted}, the herd of ${h.label} (~${formatCount(h.lost)} devices onto ${h.nodes} node${h.nodes === 1 ? '' : 's'} within ${formatMs(deadlineMs)}: ${formatMs(spreadMs)} of reconnect spread + half the ${formatMs(scenario.devices.connectTimeoutMs)} connect timeout, ~${formatCount(Math.round(hz))} connects/s; ${Math.round(CPU_PLAN_SHARE * 100)}% of ${plan.cores} cores)`,
      unit: 'cores' as const,
      estimate: true,
      need,
      allowed: plan.allowed,
      ok,
      ...(!ok && {
        lift: `expect connect timeouts, retries on top of the herd and a saturated generator (an INVALID result): widen devices.reconnect's first window (${formatMs(spreadMs)} now), lengthen devices.connectTimeout, or use fewer devices`,
      }),
    };
  });
}

/**
 * What one node costs, for planning a node held to a CPU quota
 * (`profiles.<name>.cpu`). Read off two node-kills on the kernel engine on the
 * AMD EPYC box (bench/RESULTS.md, twenty-second session), each surviving
 * node's CPU before publishing (its report's `cpuSeconds - publishCpuSeconds`):
 * 20,000 devices at 1,000/s, 3.3-3.6 s for ~5,300 connects in 20 s; 10,000 at
 * 400/s under a 0.2-core quota, 3.6 s for ~2,550 in 31 s. ~600 µs per connect
 * (the scenario's device sends its hello and token, the node registers it at
 * the hub, the bytes cross a veth pair and a relay; the lean one-process bench,
 * `bench/multi-process-cost.ts`, reads 224) and ~0.03 cores of running cost
 * (health checks, the run's polls, the hub; idle alone it is 0.01) put the two
 * at 4.2 and 3.1 s: within 25 %, a planning figure. A heartbeat costs the node
 * what the whole box's figure says (its ping, timer and the pong's parse); TLS
 * adds the node's side of a full handshake (`bench/tls-cost.ts`: +418 µs); a
 * message, half the whole box's figure.
 */
export const NODE_CPU = {
  connectUs: 600,
  tlsHandshakeUs: 420,
  baseCores: 0.03,
  messageShare: 0.5,
} as const;

/**
 * Each region whose nodes are held to a CPU quota: one node's CPU at the ramp
 * (its share of the connect rate, with its heartbeats and traffic) and at the
 * worst herd it survives, against the quota. Over it, the nodes fall behind:
 * the run measures them throttled, which may be the point of the run, so it
 * is said and the run goes; it is not the generator's saturation.
 */
function nodeQuotaChecks(scenario: Scenario): PreflightCheck[] {
  const devices = scenario.devices.count + scenario.devices.reserve;
  if (devices === 0) return [];
  const { deadlineMs } = herdDeadlineMs(scenario);
  const herds = timelineHerds(scenario);
  const rates = messageRates(scenario);
  const out: PreflightCheck[] = [];
  for (const r of scenario.topology.regions) {
    const quota = r.profile.cpu;
    if (quota === null || r.nodes < 1) continue;
    const held = scenario.devices.regions
      .filter((b) => b.region === r.name)
      .reduce((a, b) => a + b.count, 0);
    const perNode = held / r.nodes;
    const rampHz = (scenario.devices.connectRateHz * held) / devices / r.nodes;
    const herd = herds
      .filter((h) => h.region === r.name)
      .map((h) => ({ h, hz: (h.lost * 1000) / deadlineMs / h.nodes }))
      .sort((x, y) => y.hz - x.hz)[0];
    const worst = herd && herd.hz > rampHz ? herd : undefined;
    const hz = worst?.hz ?? rampHz;
    const heartbeatHz = (perNode * 1000) / r.profile.heartbeatIntervalMs;
    const trafficUs =
      ((rates.push + rates.roomPublish) * CPU_US_PER_MESSAGE.push +
        rates.roomDelivery * CPU_US_PER_MESSAGE.roomDelivery +
        rates.d2d * CPU_US_PER_MESSAGE.d2d) *
      (held / devices / r.nodes);
    const perConnectUs = NODE_CPU.connectUs + (scenario.topology.tls ? NODE_CPU.tlsHandshakeUs : 0);
    const need =
      NODE_CPU.baseCores +
      (hz * perConnectUs + heartbeatHz * CPU_US_PER_HEARTBEAT + NODE_CPU.messageShare * trafficUs) /
        1e6;
    const ok = need <= quota;
    out.push({
      what: `cpu estimate, one node of ${r.name} under its ${quota}-core quota (profile ${r.profile.name}; ~${formatCount(Math.round(hz))} connects/s ${worst ? `in the herd of ${worst.h.label}` : 'in the ramp'}, ${formatCount(Math.round(heartbeatHz))} heartbeats/s)`,
      unit: 'cores',
      estimate: true,
      about: 'nodes',
      need,
      allowed: quota,
      ok,
      ...(!ok && {
        lift: `expect the nodes, not the generator, to fall behind: connects queued past their timeout and a reconnect storm; raise profiles.${r.profile.name}.cpu, or ${worst ? "spread the herd (widen devices.reconnect's first window, lengthen devices.connectTimeout)" : 'lower the connect rate'}`,
      }),
    });
  }
  return out;
}

/**
 * Each `connect` action of the timeline against the end of publishing: a wave
 * of `devices` at `rate` from its time (after the ramp's estimate,
 * `count / connectRate`, when it is `after: "ramp"`) that would still be
 * starting devices when publishing ends leaves the rest unattempted. An
 * estimate: the run goes, with a warning.
 */
function waveChecks(scenario: Scenario): PreflightCheck[] {
  const rampS = scenario.devices.count / scenario.devices.connectRateHz;
  const endS = rampS + scenario.durationMs / 1000;
  const out: PreflightCheck[] = [];
  for (const a of scenario.timeline) {
    if (a.action !== 'connect') continue;
    const startS = a.atMs / 1000 + (a.after === 'ramp' ? rampS : 0);
    const need = startS + a.devices / a.rateHz;
    const ok = need <= endS;
    const started = Math.max(0, Math.floor((endS - startS) * a.rateHz));
    out.push({
      what: `timeline: ${a.label} at ${formatCount(a.rateHz)}/s, done before publishing ends (ramp ~${rampS.toFixed(1)} s + duration)`,
      unit: 'seconds',
      estimate: true,
      need,
      allowed: endS,
      ok,
      ...(!ok && {
        lift: `about ${formatCount(Math.min(a.devices, started))} of its ${formatCount(a.devices)} devices start before the end: lengthen duration by ${Math.ceil(need - endS)} s or raise the wave's rate`,
      }),
    });
  }
  return out;
}

/**
 * Reconnects a second that `devices.periodicReconnect` makes once the fleet is
 * up: each device closes after `every` minus a uniform 0..`stagger`, so after
 * `every - stagger / 2` on average, and connects again at once.
 */
export function periodicReconnectHz(
  periodic: Scenario['devices']['periodicReconnect'],
  devices: number,
): number {
  if (periodic === null) return 0;
  return (devices * 1000) / Math.max(1, periodic.everyMs - periodic.staggerMs / 2);
}

/** One line: where the fleet and nodes go and what the run needs. */
export function describePreflight(scenario: Scenario, r: PreflightResult): string {
  const p = r.placement;
  const devices = scenario.devices.count + scenario.devices.reserve;
  const nodes = Object.entries(r.nodeProcesses)
    .filter(([, n]) => n > 1)
    .map(([region, n]) => `${region} nodes ${n} processes each`);
  const memory = r.checks.find((c) => c.what.startsWith('memory'));
  const addresses = p.routes.reduce((a, x) => a + x.localAddresses.length, 0);
  return [
    `preflight: ${formatCount(devices)} devices on ${p.processes} load process${p.processes === 1 ? '' : 'es'} × ${p.threadsPerProcess} thread${p.threadsPerProcess === 1 ? '' : 's'}`,
    ...nodes,
    ...(addresses > 0 ? [`${addresses} source addresses`] : []),
    ...(memory
      ? [
          `memory ~${formatBytes(memory.need)}${memory.allowed !== null ? ` of ${formatBytes(memory.allowed)} available` : ''}`,
        ]
      : []),
    ...p.reasons.map((x) => `(${x})`),
  ].join('; ');
}

/** The full table, for `--preflight`. */
export function formatPreflight(scenario: Scenario, r: PreflightResult): string {
  const fmt = (c: PreflightCheck, n: number | null) => formatNeed(c, n);
  const lines = [describePreflight(scenario, r), ''];
  const width = Math.max(...r.checks.map((c) => c.what.length));
  for (const c of r.checks) {
    lines.push(
      `${c.ok ? 'ok  ' : c.estimate ? 'WARN' : 'FAIL'} ${c.what.padEnd(width)}  need ${fmt(c, c.need).padStart(10)}  allowed ${fmt(c, c.allowed).padStart(10)}`,
    );
    if (c.lift) lines.push(`     -> ${c.lift}`);
  }
  return lines.join('\n');
}

/** Throws `PB_LIMIT` naming what caps the run and how to lift it, when anything does. */
export function refuseIfCapped(scenario: Scenario, r: PreflightResult): void {
  if (r.problems.length === 0) return;
  const devices = formatCount(scenario.devices.count + scenario.devices.reserve);
  const parts = r.problems.map(
    (c) =>
      `${c.what} needs ${formatNeed(c, c.need)} but ${c.allowed === null ? '?' : formatNeed(c, c.allowed)} are allowed: ${c.lift ?? 'lower the load'}`,
  );
  throw new PushbenchError('PB_LIMIT', `${devices} devices will not fit: ${parts.join('; ')}`);
}

/**
 * One line per estimate that did not fit, for the run's notices and its
 * report: those of one kind (`cores`: this machine's CPU; `nodes`: a node's
 * CPU against its quota; `seconds`: connect waves that outlast publishing),
 * or all.
 */
export function preflightWarnings(
  r: PreflightResult,
  kind?: 'cores' | 'nodes' | 'seconds',
): string[] {
  const kindOf = (c: PreflightCheck) =>
    c.unit === 'seconds' ? 'seconds' : c.about === 'nodes' ? 'nodes' : 'cores';
  return r.warnings
    .filter((c) => kind === undefined || kindOf(c) === kind)
    .map((c) => {
      switch (kindOf(c)) {
        case 'seconds':
          return `preflight warning: ${c.what}: it ends at ~${formatNeed(c, c.need)}, publishing at ~${formatNeed(c, c.allowed)}: ${c.lift ?? ''}`.trim();
        case 'nodes':
          return `preflight warning: ${c.what} needs ~${formatNeed(c, c.need)} cores, its quota is ${formatNeed(c, c.allowed)}: ${c.lift ?? ''}`.trim();
        default:
          return `preflight warning: ${c.what} needs ~${formatNeed(c, c.need)} cores, ${formatNeed(c, c.allowed)} fit: ${c.lift ?? ''}`.trim();
      }
    });
}

/** A check's figure in its unit. */
function formatNeed(c: PreflightCheck, n: number | null): string {
  if (n === null) return 'unknown';
  switch (c.unit ?? 'count') {
    case 'bytes':
      return formatBytes(n);
    case 'cores':
      return n.toFixed(2);
    case 'seconds':
      return `${n.toFixed(1)} s`;
    case 'count':
      return formatCount(n);
  }
}
