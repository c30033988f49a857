/**
 * Where a fleet's devices live: how many load-generator processes, how many
 * worker threads in each, which global device indices each thread (a shard)
 * owns, and which source addresses each route's devices bind so that no
 * source address runs out of ephemeral ports. A pure function of the fleet's
 * size and the limits read at start (RLIMIT_NOFILE, heap limit, port range),
 * so every decision is testable for given limits.
 */
import type { Scenario } from '../scenarios/schema.js';
import type { DeviceRoute } from './messages.js';

/** File descriptors a load-generator process needs beyond its device sockets (stdio, epoll, pipes, HTTP). */
export const PROCESS_FD_OVERHEAD = 200;

/** Heap a device costs in a worker (connection state, buffers, timers), bytes; a planning figure. */
export const HEAP_BYTES_PER_DEVICE = 2048;

/** Share of a source address's ephemeral ports the fleet may use at most (the rest stays for everyone else). */
export const PORT_HEADROOM = 0.8;

/**
 * Devices a bound source address is planned for. `bind(address, 0)` gets
 * slower as the address's ports fill (the kernel searches for a free port
 * under a lock; measured here: at ~8,000 bound ports per address, bind took
 * 30 % of both cores and 250,000 connects stalled near 95,000), so spread wide.
 */
export const DEVICES_PER_ADDRESS = 2048;

/** Source addresses `devices` bound sockets should spread over, for `ports` ephemeral ports each. */
export function addressesFor(devices: number, ports: number | null): number {
  const ceiling = Math.max(1, Math.floor((ports ?? 28_232) * PORT_HEADROOM));
  return Math.max(Math.ceil(devices / DEVICES_PER_ADDRESS), Math.ceil(devices / ceiling));
}

/** What the machine allows one process, read at start (core/machine.ts). */
export interface ProcessLimits {
  /** RLIMIT_NOFILE soft limit; null when it cannot be read (then one process is assumed to suffice). */
  openFiles: number | null;
  /** V8 heap limit of one thread, bytes (`v8.getHeapStatistics().heap_size_limit`). */
  heapBytes: number;
  /** Ephemeral ports per source address (`ip_local_port_range`); null when unknown. */
  ephemeralPorts: number | null;
}

/** What to place. */
export interface PlacementRequest {
  /** Devices opened at the start. */
  devices: number;
  /** Devices held back for `connect` actions; they need sockets too. */
  reserve: number;
  /** Worker threads asked for in all (the scenario's `workers`). */
  threads: number;
  /** Where each block of global device indices connects. */
  routes: DeviceRoute[];
  /**
   * Source addresses to spread a route over when its devices would exhaust
   * one address's ports and the route names none. Default: 127.1.0.1, 127.1.0.2, ...
   */
  addressPool?: string[];
  /** Never put more than this many devices in one process (lower than the file limit allows). */
  maxDevicesPerProcess?: number;
}

/** One shard: a worker thread's blocks of global device indices (see DeviceWorkerData). */
export interface Shard {
  /** Shard index across all processes: the worker index. */
  index: number;
  /** Process that runs it: 0 = the coordinator's own process when `processes` is 1, else agent `process`. */
  process: number;
  firstDevice: number;
  deviceCount: number;
  reserveFirst: number;
  reserveCount: number;
}

/** The decision, with the reasons behind it. */
export interface Placement {
  /** Load-generator processes that hold devices (1 = the coordinator's own). */
  processes: number;
  threadsPerProcess: number;
  shards: Shard[];
  /** The routes, with source addresses added where one address would run out of ports. */
  routes: DeviceRoute[];
  /** Most devices one process may hold under the limits. */
  devicesPerProcess: number;
  /** Why the fleet is split as it is, in words. */
  reasons: string[];
  /**
   * The region whose client host runs each process, in process order (the
   * kernel engine: {@link placeOnClientHosts}); absent: every process runs on
   * this host's own network.
   */
  clientHosts?: string[];
}

/** 127.1.0.1, 127.1.0.2, ... 127.1.0.254, 127.1.1.1, ...: n loopback addresses outside those regions use. */
export function loopbackPool(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    out.push(`127.1.${Math.floor(i / 254)}.${(i % 254) + 1}`);
  }
  return out;
}

/** Worker i's share of `total` over `parts`: the first (total mod parts) take one more. */
export function evenShare(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}

/**
 * Places a fleet. Processes are added when the devices exceed what one process
 * may hold: its open-file limit less {@link PROCESS_FD_OVERHEAD}, or its
 * threads' heap at {@link HEAP_BYTES_PER_DEVICE}. Threads are spread evenly
 * (at least one per process); devices and reserve evenly over all shards.
 * A route without source addresses whose devices exceed {@link PORT_HEADROOM}
 * of one address's ports gets enough addresses from the pool; a route that
 * names its addresses keeps them (they may mean something, e.g. a region).
 */
export function placeFleet(req: PlacementRequest, limits: ProcessLimits): Placement {
  const total = req.devices + req.reserve;
  const reasons: string[] = [];
  const byFiles =
    limits.openFiles === null || !Number.isFinite(limits.openFiles)
      ? Number.POSITIVE_INFINITY
      : Math.max(1, limits.openFiles - PROCESS_FD_OVERHEAD);
  const askedThreads = Math.max(1, Math.floor(req.threads));
  // The heap bound is per thread; a first guess of threads per process is what was asked.
  const byHeapPerThread = Math.max(1, Math.floor(limits.heapBytes / HEAP_BYTES_PER_DEVICE));
  const cap = Math.min(byFiles, req.maxDevicesPerProcess ?? Number.POSITIVE_INFINITY);
  let processes = Math.max(1, Math.ceil(total / cap));
  let threadsPerProcess = Math.max(1, Math.ceil(askedThreads / processes));
  // Too many devices for the threads' heaps: more threads (one process holds them all if files allow).
  while (Math.ceil(total / (processes * threadsPerProcess)) > byHeapPerThread) threadsPerProcess++;
  const devicesPerProcess = Math.min(cap, byHeapPerThread * threadsPerProcess);
  processes = Math.max(processes, Math.ceil(total / devicesPerProcess));
  if (processes > 1) {
    if (byFiles <= cap && total > byFiles) {
      reasons.push(
        `${fmt(total)} devices need ${fmt(total + PROCESS_FD_OVERHEAD)} open files but one process may open ${fmt(limits.openFiles ?? 0)} (RLIMIT_NOFILE): ${processes} processes of up to ${fmt(devicesPerProcess)} devices`,
      );
    } else if (req.maxDevicesPerProcess !== undefined && total > req.maxDevicesPerProcess) {
      reasons.push(
        `at most ${fmt(req.maxDevicesPerProcess)} devices per process were asked for: ${processes} processes`,
      );
    } else {
      reasons.push(`the threads' heaps hold ${fmt(devicesPerProcess)} devices per process`);
    }
  }
  const shardsTotal = processes * threadsPerProcess;
  const shards: Shard[] = [];
  let first = 0;
  let reserveFirst = req.devices;
  for (let i = 0; i < shardsTotal; i++) {
    const deviceCount = evenShare(req.devices, shardsTotal, i);
    const reserveCount = evenShare(req.reserve, shardsTotal, i);
    shards.push({
      index: i,
      process: Math.floor(i / threadsPerProcess),
      firstDevice: first,
      deviceCount,
      reserveFirst,
      reserveCount,
    });
    first += deviceCount;
    reserveFirst += reserveCount;
  }
  const routes = spreadAddresses(req, limits, reasons);
  return { processes, threadsPerProcess, shards, routes, devicesPerProcess, reasons };
}

/**
 * Places a scenario's fleet (its devices, reserve, threads and placement
 * settings) over `routes`. Preflight calls it once and the run passes the
 * result to the coordinator, so what was checked is what runs.
 */
export function placeScenario(
  scenario: Scenario,
  routes: DeviceRoute[],
  limits: ProcessLimits,
  /** Each region's devices run on its own client host (the kernel engine; see {@link placeOnClientHosts}). */
  onClientHosts = false,
): Placement {
  const { count, reserve } = scenario.devices;
  return (onClientHosts ? placeOnClientHosts : placeFleet)(
    {
      devices: count,
      reserve,
      threads: Math.max(1, Math.min(scenario.workers, count)),
      routes,
      ...(scenario.placement.devicesPerProcess !== null && {
        maxDevicesPerProcess: scenario.placement.devicesPerProcess,
      }),
      ...(scenario.placement.sourceAddresses !== null && {
        addressPool: scenario.placement.sourceAddresses,
      }),
    },
    limits,
  );
}

/**
 * Places a fleet whose devices are numbered region by region (scenarios/
 * sections/devices.ts `homeByRegion`) on a client host per region: each
 * region's devices are placed as a fleet of their own, in processes that hold
 * that region's devices only (at least one per region), with the threads asked
 * for shared by device count. Shards and processes are numbered on across
 * regions, in region order.
 */
export function placeOnClientHosts(req: PlacementRequest, limits: ProcessLimits): Placement {
  const byRegion = new Map<
    string,
    { first: number; count: number; reserveFirst: number; reserve: number }
  >();
  for (const r of req.routes) {
    const at = byRegion.get(r.region) ?? { first: -1, count: 0, reserveFirst: -1, reserve: 0 };
    byRegion.set(r.region, at);
    if (r.first < req.devices) {
      if (at.first >= 0 && at.first + at.count !== r.first) throw notByRegion(r.region);
      if (at.first < 0) at.first = r.first;
      at.count += r.count;
    } else {
      if (at.reserveFirst >= 0 && at.reserveFirst + at.reserve !== r.first)
        throw notByRegion(r.region);
      if (at.reserveFirst < 0) at.reserveFirst = r.first;
      at.reserve += r.count;
    }
  }
  const total = req.devices + req.reserve;
  const shards: Shard[] = [];
  const clientHosts: string[] = [];
  const reasons: string[] = [];
  let threadsPerProcess = 1;
  let devicesPerProcess = Number.POSITIVE_INFINITY;
  for (const [region, at] of byRegion) {
    const devices = at.count + at.reserve;
    if (devices === 0) continue;
    const one = placeFleet(
      {
        ...req,
        devices: at.count,
        reserve: at.reserve,
        threads: Math.max(1, Math.round((req.threads * devices) / Math.max(1, total))),
        routes: [],
      },
      limits,
    );
    const base = { shard: shards.length, process: clientHosts.length };
    // A region without initial devices or without reserve has no block of that kind.
    const first = Math.max(at.first, 0);
    const reserveFirst = at.reserveFirst < 0 ? req.devices : at.reserveFirst;
    for (const s of one.shards) {
      shards.push({
        index: base.shard + s.index,
        process: base.process + s.process,
        firstDevice: first + s.firstDevice,
        deviceCount: s.deviceCount,
        // placeFleet numbers a region's reserve from its own device count on.
        reserveFirst: reserveFirst + (s.reserveFirst - at.count),
        reserveCount: s.reserveCount,
      });
    }
    for (let p = 0; p < one.processes; p++) clientHosts.push(region);
    threadsPerProcess = Math.max(threadsPerProcess, one.threadsPerProcess);
    devicesPerProcess = Math.min(devicesPerProcess, one.devicesPerProcess);
    reasons.push(
      `region ${region}: ${fmt(devices)} devices in ${one.processes} process${one.processes === 1 ? '' : 'es'} on its client host${one.reasons.length > 0 ? ` (${one.reasons.join('; ')})` : ''}`,
    );
  }
  return {
    processes: clientHosts.length,
    threadsPerProcess,
    shards,
    routes: spreadAddresses(req, limits, reasons),
    devicesPerProcess: Number.isFinite(devicesPerProcess) ? devicesPerProcess : 0,
    reasons,
    clientHosts,
  };
}

function notByRegion(region: string): Error {
  return new RangeError(
    `region ${region}'s devices are not numbered region by region (homeByRegion): they cannot be placed on its client host`,
  );
}

/**
 * The placement with its routes pointed at where devices really connect,
 * once the cluster exists: each planned route (same block of devices) takes
 * the live route's host, port and path and keeps the source addresses placed
 * for it, or the live route's own when none were placed.
 */
export function withLiveRoutes(placement: Placement, live: DeviceRoute[]): Placement {
  const routes = live.map((route) => {
    const planned = placement.routes.find(
      (r) => r.first === route.first && r.count === route.count,
    );
    // The cluster's own source addresses win (the kernel engine's are on its
    // fabric); the plan's spread fills in where the cluster gave none.
    return planned === undefined ||
      planned.localAddresses.length === 0 ||
      route.localAddresses.length > 0
      ? route
      : { ...route, localAddresses: planned.localAddresses };
  });
  return { ...placement, routes };
}

/** Adds source addresses to routes that would exhaust one address's ephemeral ports. */
function spreadAddresses(
  req: PlacementRequest,
  limits: ProcessLimits,
  reasons: string[],
): DeviceRoute[] {
  if (limits.ephemeralPorts === null) return req.routes;
  const perAddress = Math.max(1, Math.floor(limits.ephemeralPorts * PORT_HEADROOM));
  // Unbound sockets (no address) get their port from connect(), per destination: cheap
  // up to the ceiling. Past it they must bind, and then spread wide.
  const needed = req.routes.map((r) =>
    r.localAddresses.length === 0 && r.count > perAddress
      ? addressesFor(r.count, limits.ephemeralPorts)
      : 0,
  );
  const pool = req.addressPool ?? loopbackPool(needed.reduce((a, b) => a + b, 0));
  let next = 0;
  return req.routes.map((route, i) => {
    const n = needed[i]!;
    if (n === 0) return route;
    const addrs = pool.slice(next, next + n);
    next += n;
    if (addrs.length < n) {
      // Too short a pool: use what there is; preflight says the route is short of ports.
      return { ...route, localAddresses: addrs };
    }
    reasons.push(
      `${fmt(route.count)} devices of ${route.region} to ${route.host}:${route.port} exceed one source address's ${fmt(perAddress)} usable ports: spread over ${n} addresses ${addrs[0]}..${addrs[n - 1]} (about ${fmt(DEVICES_PER_ADDRESS)} each)`,
    );
    return { ...route, localAddresses: addrs };
  });
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}
