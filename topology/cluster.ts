import { PushbenchError } from '../core/errors.js';
import { ephemeralPorts, openFilesLimit } from '../core/machine.js';
import { makeRunTls, type RunTls } from '../core/tls-certs.js';
import type { DeviceRoute } from '../loadgen/messages.js';
import { addressesFor } from '../loadgen/placement.js';
import type {
  DatastoreLinkName,
  FaultScope,
  RegionTopology,
  Scenario,
} from '../scenarios/schema.js';
import { nodeId as nodeIdOf, nodeNumber } from '../scenarios/sections/topology.js';
import {
  decisionRegions,
  type NetworkEngineChoice,
  needsDecisionPoint,
  routesByHealth,
} from './kernel/engine.js';
import { KernelFabric, type KernelHost } from './kernel/fabric.js';
import { type LatencyLink, startLatencyLink, startLink } from './kernel/links.js';
import { type DecisionSpec, KernelNetwork } from './kernel/network.js';
import type { CgroupUsage, LimitPlan } from './limits.js';
import { ManagedRedis } from './managed-redis.js';
import { type NetworkHandle, startNetworkProcess } from './network/handle.js';
import { relaysFor } from './network/relays.js';
import type { BackendSpec, NetworkFault, NetworkSample, NetworkSpec } from './network/types.js';
import { expectedConnectionsPerNode, nodeProcesses } from './node-placement.js';
import { type NodeExit, type NodeProcess, startNodeProcess } from './supervisor.js';

export type { DeviceRoute } from '../loadgen/messages.js';

/** Where every node listens on its own kernel-engine host (each host has its own address). */
const KERNEL_NODE_PORT = 7001;
/** Where a node's latency link listens on its host, when it has one. */
const KERNEL_LINK_PORT = 7002;
/** Where a node's link to its datastore listens on its host (kernel engine). */
const KERNEL_DATASTORE_LINK_PORT = 7003;
/** Port of a kernel host's link to the registry's Redis, when it parts from the broker's. */
const KERNEL_REGISTRY_LINK_PORT = 7004;

/** A node's datastore connections a link carries: both (the hub's one socket), or one of Redis's. */
type LinkRole = DatastoreLinkName;

/** Why a node is not (or no longer) running. */
export type NodeState = 'up' | 'killed' | 'stopping' | 'stopped' | 'crashed';

/** One node of the cluster over its whole life (restarts keep the id). */
export interface ClusterNode {
  nodeId: string;
  region: string;
  state: NodeState;
  pid: number;
  httpUrl: string;
  /** Every process that ran under this id: pid, how it ended, what its cgroups counted (OOM kills). */
  lives: Array<{ pid: number; exit?: NodeExit; usage?: CgroupUsage }>;
  /** The profile's cpu/memory/openFiles limits for the current process: enforced or not, and how. */
  limits: LimitPlan;
}

/** What the cluster reports when something happens that nobody scripted (a node falls over). */
export interface ClusterEvents {
  /** A node process exited without being told to (crash, overload). */
  unexpectedExit?: (node: ClusterNode, exit: NodeExit) => void;
}

/** Secrets the nodes and the harness share. */
export interface ClusterSecrets {
  secret: string;
  apiKey: string;
}

/** Client hosts' source addresses are `10.N.<block>.k`, region k's block this plus k (fabric.ts: host blocks 100-199). */
const CLIENT_SOURCE_BLOCK = 100;
/** Regions on the kernel engine: client blocks count up from 100 and HAProxy's down from 198, so they never meet. */
const MAX_KERNEL_REGIONS = 49;

/**
 * Source addresses of region `k`'s devices, 127.0.(10+k).1 up: at least 8,
 * and enough that each is lightly used (placement.ts `addressesFor`; at most
 * 254). The global entry tells regions apart by them.
 */
export function regionAddresses(k: number, devices = 0, ports = ephemeralPorts()): string[] {
  const n = Math.min(254, Math.max(8, addressesFor(devices, ports)));
  return Array.from({ length: n }, (_, j) => `127.0.${10 + k}.${1 + j}`);
}

/**
 * Where each block of devices will connect, before the cluster exists (host
 * and port not yet known): for preflight's port and placement checks.
 */
export function plannedRoutes(scenario: Scenario): DeviceRoute[] {
  const { regions } = scenario.topology;
  return scenario.devices.regions.map((b) => ({
    region: b.region,
    first: b.first,
    count: b.count,
    host: '127.0.0.1',
    port: 0,
    path: '/ws',
    localAddresses: regionAddresses(
      Math.max(
        0,
        regions.findIndex((r) => r.name === b.region),
      ),
      regionDevices(scenario, b.region),
    ),
  }));
}

/** Devices (initial and reserve) whose home is `region`. */
function regionDevices(scenario: Scenario, region: string): number {
  return scenario.devices.regions
    .filter((b) => b.region === region)
    .reduce((a, b) => a + b.count, 0);
}

/**
 * The system under test as processes: reference nodes grouped in regions,
 * sharing a registry and broker (an embedded hub process, or Redis), and — when
 * the scenario needs balancers or faults — the network fabric process in front
 * of them. Every node is a real child process; kills are real signals.
 */
export class Cluster {
  private readonly nodes = new Map<string, ClusterNode>();
  private readonly procs = new Map<string, NodeProcess>();
  private readonly nextIndex = new Map<string, number>();
  private hub: NodeProcess | undefined;
  private network: NetworkHandle | undefined;
  private addresses: Awaited<ReturnType<NetworkHandle['addresses']>> | undefined;
  private stopping = false;
  /** Node processes started so far (a seed per life). */
  private started = 0;
  private readonly lifeEnds = new Set<Promise<NodeExit>>();
  /** The kernel engine's hosts; undefined on the userland engine. */
  private fabric: KernelFabric | undefined;
  /** Each node's host on the fabric (a restarted node keeps its host). */
  private readonly hosts = new Map<string, KernelHost>();
  /** Latency links of the nodes a latency fault may reach (kernel engine), by node id. */
  private readonly links = new Map<string, LatencyLink>();
  /** Devices' source addresses on the fabric, by home region. */
  private readonly sourceAddresses = new Map<string, string[]>();
  /** Each region's client host on the fabric: its load agents run there and its devices connect from it. */
  private readonly clientHosts = new Map<string, KernelHost>();
  /**
   * Each node's link to its datastore (Redis or the hub), when the timeline has
   * a datastore-latency: the node reaches its registry and broker through it.
   */
  private readonly datastoreLinks = new Map<
    string,
    { nodeId: string; role: LinkRole; link: LatencyLink }
  >();
  /** datastore-latency faults standing, by id: the node they name (null: every node), which link, the delay. */
  private readonly datastoreDelays = new Map<
    string,
    { nodeId: string | null; link: LinkRole; delayMs: number; jitterMs: number }
  >();
  private nextDatastoreDelay = 0;
  /** The run's CA, node certificate and ticket keys (`topology.tls`), in a temp folder stop() removes. */
  private tls: RunTls | undefined;
  /** The redis-server this run owns (`topology.redis: "managed"`). */
  private managedRedis: ManagedRedis | undefined;
  /** The Redis the nodes share: the scenario's URL or the managed one's; null: a hub or in-process. */
  private redisUrl: string | null;

  private constructor(
    private readonly scenario: Scenario,
    private readonly secrets: ClusterSecrets,
    private readonly events: ClusterEvents,
    /** The network engine this run uses (topology/kernel/engine.ts). */
    readonly engine: NetworkEngineChoice,
    /** Where devices' endpoints listen (balancers, or the one node); default 127.0.0.1. */
    private readonly deviceHost: string | undefined,
  ) {
    this.redisUrl = scenario.topology.redisUrl;
  }

  /** Starts hub, nodes and network; on any failure stops what started and rethrows. */
  static async start(
    scenario: Scenario,
    secrets: ClusterSecrets,
    events: ClusterEvents = {},
    engine: NetworkEngineChoice = { engine: 'userland', why: 'default' },
    /**
     * Where the devices' endpoints listen, when devices come from load agents
     * on other hosts (`--agents`): the balancers on the userland engine, else
     * the one node. Default 127.0.0.1. Not for the kernel engine.
     */
    deviceHost?: string,
  ): Promise<Cluster> {
    const cluster = new Cluster(scenario, secrets, events, engine, deviceHost);
    try {
      await cluster.boot();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private region(name: string): RegionTopology {
    const r = this.scenario.topology.regions.find((x) => x.name === name);
    if (!r) throw new PushbenchError('PB_INTERNAL', `no region ${name}`);
    return r;
  }

  private async boot(): Promise<void> {
    const { topology } = this.scenario;
    const total = topology.regions.reduce((a, r) => a + r.nodes, 0);
    const growing = this.scenario.timeline.some((t) => t.action === 'scale-up');
    if (topology.tls) this.tls = await makeRunTls(topology.tls.key, topology.tls.certificate);
    if (this.engine.engine === 'kernel') {
      this.fabric = await KernelFabric.create();
      // Each region's devices run on a client host of their own, and connect from
      // addresses on it (a block per region, from 10.N.100.x up; HAProxy's and the
      // relays' blocks count down from 199).
      if (topology.regions.length > MAX_KERNEL_REGIONS) {
        throw new PushbenchError(
          'PB_USAGE',
          `the kernel engine runs at most ${MAX_KERNEL_REGIONS} regions (a block of client and balancer addresses each); this scenario has ${topology.regions.length}`,
        );
      }
      for (const [k, r] of topology.regions.entries()) {
        // A region homing no device has no clients.
        if (regionDevices(this.scenario, r.name) === 0) continue;
        const count = regionAddresses(k, regionDevices(this.scenario, r.name)).length;
        const slug = `clients-${r.name.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 32);
        const taken = this.fabric.list().some((h) => h.name === slug);
        const host = await this.fabric.addHost(taken ? `clients-${k + 1}` : slug);
        this.clientHosts.set(r.name, host);
        this.sourceAddresses.set(
          r.name,
          await this.fabric.addHostAddresses(host, Math.min(254, count), CLIENT_SOURCE_BLOCK + k),
        );
      }
    }
    if (topology.managedRedis) {
      // On the kernel engine Redis is a host of its own, like the hub.
      const redisHost = this.fabric ? await this.fabric.addHost('redis') : undefined;
      this.managedRedis = await ManagedRedis.start({
        ...topology.managedRedis,
        ...(redisHost && { host: redisHost }),
      });
      this.redisUrl = this.managedRedis.url;
    }
    // Nodes share state through Redis when configured, else through a hub process
    // that holds no devices (so killing any node never takes the cluster's state with it).
    if (!this.redisUrl && (total > 1 || growing)) {
      // On the kernel engine the hub is a host of its own (the nodes reach it across the
      // bridge, and a dead run's sweep kills it with the rest).
      const hubHost = this.fabric ? await this.fabric.addHost('hub') : undefined;
      this.hub = await startNodeProcess({
        nodeId: 'hub',
        nice: topology.nodeNice,
        ...(hubHost && { host: hubHost.address, namespace: hubHost.namespace }),
        ...this.secrets,
        heartbeatIntervalMs: 10_000,
        heartbeatTimeoutMs: 30_000,
      });
    }
    const starts: Promise<void>[] = [];
    for (const r of topology.regions) {
      this.nextIndex.set(r.name, r.nodes + 1);
      for (let n = 1; n <= r.nodes; n++) starts.push(this.startNode(r.name, nodeIdOf(r.name, n)));
    }
    await Promise.all(starts);
    if (this.fabric) {
      // Regions of one node without a balancer engine of the kernel connect straight to it.
      const decided = decisionRegions(this.scenario);
      this.network = await KernelNetwork.start(
        this.fabric,
        topology.regions
          .filter((r) => r.balancer.engine !== 'builtin' && !decided.includes(r))
          .map((r) => ({
            ...this.regionSpec(r),
            engine: r.balancer.engine === 'kernel' ? 'kernel' : 'haproxy',
            devices: regionDevices(this.scenario, r.name),
            ...this.balancerTls(),
          })),
        (nodeId) => {
          const host = this.hosts.get(nodeId);
          const proc = this.procs.get(nodeId);
          const node = this.nodes.get(nodeId);
          return host && proc && node ? { host, region: node.region, port: proc.port } : undefined;
        },
        (nodeId) => this.links.get(nodeId),
        (scope) =>
          'nodeId' in scope
            ? [scope.nodeId]
            : [...this.nodes.values()]
                .filter((n) => n.region === scope.region)
                .map((n) => n.nodeId),
        () => [
          this.fabric!.rootAddress,
          ...(this.hub ? [this.hub.host] : []),
          ...[...this.hosts.values()].map((h) => h.address),
        ],
        {
          addresses: this.hub ? [this.hub.host] : redisAddresses(this.redisUrl),
          region: topology.datastoreRegion,
        },
        needsDecisionPoint(this.scenario) ? this.decisionSpec(decided) : null,
      );
    } else if (topology.balanced) {
      const spec: NetworkSpec = {
        host: this.deviceHost ?? '127.0.0.1',
        seed: this.scenario.seed,
        regions: topology.regions.map((r) => this.regionSpec(r)),
      };
      if (topology.regions.length > 1) {
        const homeByAddress: Record<string, string> = {};
        topology.regions.forEach((r, k) => {
          for (const a of regionAddresses(k, regionDevices(this.scenario, r.name)))
            homeByAddress[a] = r.name;
        });
        spec.global = {
          mode: topology.routing.mode,
          health: topology.routing.health,
          homeByAddress,
        };
      }
      this.network = await startNetworkProcess(spec);
    }
    if (this.network) {
      this.addresses = await this.network.addresses();
      // A profile's conntrack table stands for the whole run: the userland fabric's
      // emulation, or the kernel's own table on each node host.
      for (const r of topology.regions) {
        if (r.profile.conntrack !== null) {
          await this.network.applyFault({
            kind: 'conntrack-limit',
            scope: { region: r.name },
            table: r.profile.conntrack,
            standing: true,
          });
        }
      }
    }
  }

  /**
   * The builtin balancers of the kernel engine, as the userland network in
   * hand-off mode: their regions, the global entry with health routing (homes by
   * the kernel fabric's source addresses), and relays enough for their devices.
   */
  private decisionSpec(regions: RegionTopology[]): DecisionSpec {
    const { topology } = this.scenario;
    const health = routesByHealth(this.scenario);
    // With a global entry every device passes the relays (to a builtin balancer's node,
    // or on to another engine's balancer).
    const devices = health
      ? this.scenario.devices.count + this.scenario.devices.reserve
      : regions.reduce((n, r) => n + regionDevices(this.scenario, r.name), 0);
    const spec: DecisionSpec['spec'] = {
      seed: this.scenario.seed,
      regions: regions.map((r) => this.regionSpec(r)),
      relays: { count: relaysFor(devices, openFilesLimit()), openFiles: openFilesLimit() },
    };
    if (routesByHealth(this.scenario)) {
      const homeByAddress: Record<string, string> = {};
      for (const [region, addresses] of this.sourceAddresses) {
        for (const a of addresses) homeByAddress[a] = region;
      }
      spec.global = {
        mode: 'health',
        health: topology.routing.health,
        homeByAddress,
        order: topology.regions.map((r) => r.name),
      };
    }
    const external = health
      ? topology.regions.filter((r) => !regions.includes(r)).map((r) => r.name)
      : [];
    return { spec, external, devices };
  }

  /** A region's balancer settings and its nodes as backends, for either engine. */
  private regionSpec(r: RegionTopology) {
    return {
      name: r.name,
      algorithm: r.balancer.algorithm,
      slowStartMs: r.balancer.slowStartMs,
      health: r.balancer.health,
      failOpen: r.balancer.failOpen,
      redispatch: r.balancer.redispatch,
      ...(r.balancer.maxConnecting !== null && { maxConnecting: r.balancer.maxConnecting }),
      ...(r.balancer.maxConnecting !== null &&
        r.balancer.queueTimeoutMs !== null && { queueTimeoutMs: r.balancer.queueTimeoutMs }),
      backends: [...this.nodes.values()]
        .filter((n) => n.region === r.name)
        .map((n) => this.backendOf(n.nodeId)),
    };
  }

  private backendOf(nodeId: string): BackendSpec {
    const p = this.procs.get(nodeId);
    if (!p) throw new PushbenchError('PB_INTERNAL', `node ${nodeId} is not running`);
    // Through its latency link when it has one (kernel engine). Its pid lets health checks tell
    // a node starved of CPU by this shared machine from one that does not answer.
    return {
      nodeId,
      host: p.host,
      port: this.links.get(nodeId)?.port ?? p.port,
      ...(p.pid > 0 && { pid: p.pid }),
    };
  }

  /** The node's host on the fabric, made on its first start. */
  private async hostFor(nodeId: string): Promise<KernelHost | undefined> {
    if (!this.fabric) return undefined;
    let host = this.hosts.get(nodeId);
    if (!host) {
      host = await this.fabric.addHost(
        nodeId
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, '-')
          .slice(0, 32),
      );
      this.hosts.set(nodeId, host);
    }
    return host;
  }

  /** True when some latency action of the timeline may reach this node. */
  private latencyMayReach(region: string, nodeId: string): boolean {
    return this.scenario.timeline.some(
      (t) =>
        t.action === 'latency' &&
        ('nodeId' in t.scope ? t.scope.nodeId === nodeId : t.scope.region === region),
    );
  }

  private async startNode(region: string, nodeId: string): Promise<void> {
    const profile = this.region(region).profile;
    const host = await this.hostFor(nodeId);
    if (host && this.fabric && !this.links.has(nodeId) && this.latencyMayReach(region, nodeId)) {
      // There is no netem here: the node's own latency link sits in front of it.
      this.links.set(
        nodeId,
        await startLatencyLink(
          host,
          KERNEL_LINK_PORT,
          KERNEL_NODE_PORT,
          this.scenario.seed + host.index,
        ),
      );
    }
    const datastore = await this.datastoreFor(nodeId, host);
    const proc = await startNodeProcess({
      nodeId,
      nice: this.scenario.topology.nodeNice,
      ...(host && { host: host.address, namespace: host.namespace, port: KERNEL_NODE_PORT }),
      // Devices from other hosts reach the one node directly.
      ...(!host &&
        !this.scenario.topology.balanced &&
        this.deviceHost !== undefined && { host: this.deviceHost }),
      processes: nodeProcesses(
        profile,
        expectedConnectionsPerNode(this.scenario, region),
        openFilesLimit(),
      ),
      // Each node, and each life of it, draws its own replayable jitter.
      seed: (this.scenario.seed * 1_000_003 + this.started++) >>> 0,
      ...this.secrets,
      heartbeatIntervalMs: profile.heartbeatIntervalMs,
      heartbeatTimeoutMs: profile.heartbeatTimeoutMs,
      drainWindowMs: profile.drainWindowMs,
      ...datastore,
      ...(profile.capacity !== null && {
        maxConnections: profile.capacity,
        overload: profile.overload,
      }),
      ...(profile.maxLifetimeMs !== null && { maxLifetimeMs: profile.maxLifetimeMs }),
      ...(profile.admissionRateHz !== null && { admissionRateHz: profile.admissionRateHz }),
      ...(profile.d2dCacheTtlMs !== null && { d2dCacheTtlMs: profile.d2dCacheTtlMs }),
      // d2d and pushes are the harness's load, not abuse: lift the per-device limits.
      extraArgs: [
        '--d2d-rate',
        '1000',
        '--push-rate',
        '10000',
        ...this.tlsArgs(),
        ...(this.scenario.topology.peerLinks ? [] : ['--no-peer-links']),
      ],
      limits: { cpu: profile.cpu, memoryBytes: profile.memoryBytes, openFiles: profile.openFiles },
    });
    // `exited` resolves after the node's cgroups are removed; stop() waits for every life's.
    this.lifeEnds.add(proc.exited);
    if (this.stopping) {
      // The cluster began stopping while this node booted (a late scale-up or restart).
      await proc.stop(3000);
      return;
    }
    this.procs.set(nodeId, proc);
    const existing = this.nodes.get(nodeId);
    const node: ClusterNode = existing ?? {
      nodeId,
      region,
      state: 'up',
      pid: proc.pid,
      httpUrl: proc.httpUrl,
      lives: [],
      limits: proc.limits,
    };
    node.state = 'up';
    node.pid = proc.pid;
    node.httpUrl = proc.httpUrl;
    node.limits = proc.limits;
    const life: ClusterNode['lives'][number] = { pid: proc.pid };
    node.lives.push(life);
    this.nodes.set(nodeId, node);
    void proc.exited.then((exit) => {
      life.exit = exit;
      if (proc.cgroupPaths.length > 0) life.usage = proc.usage();
      if (this.procs.get(nodeId) === proc) this.procs.delete(nodeId);
      if (node.state === 'up' && !this.stopping) {
        node.state = 'crashed';
        this.events.unexpectedExit?.(node, exit);
      } else if (node.state === 'stopping') {
        node.state = 'stopped';
      }
    });
  }

  /**
   * Each region's client host (the kernel engine): the namespace its load
   * agents run in, and its address. Empty on the userland engine.
   */
  clientHostsByRegion(): Map<string, { namespace: string; address: string }> {
    return new Map(
      [...this.clientHosts].map(([region, h]) => [
        region,
        { namespace: h.namespace, address: h.address },
      ]),
    );
  }

  /** Where each region's devices connect (the global entry, a region balancer, or the one node). */
  deviceRoutes(blocks: Scenario['devices']['regions']): DeviceRoute[] {
    const { regions } = this.scenario.topology;
    const addresses = this.addresses;
    return blocks.map((b) => {
      const k = regions.findIndex((r) => r.name === b.region);
      let host: string;
      let port: number;
      const direct = this.fabric && !addresses?.regions[b.region];
      if (direct) {
        // The kernel engine without a balancer in this region: its one node's host.
        const node = [...this.nodes.values()].find((n) => n.region === b.region);
        const proc = node && this.procs.get(node.nodeId);
        if (!proc) throw new PushbenchError('PB_INTERNAL', `no node in region ${b.region}`);
        host = proc.host;
        port = this.links.get(node.nodeId)?.port ?? proc.port;
      } else if (addresses) {
        const entry = addresses.global ?? addresses.regions[b.region];
        if (!entry) throw new PushbenchError('PB_INTERNAL', `no balancer for region ${b.region}`);
        host = entry.host;
        port = entry.port;
      } else {
        const only = this.procs.values().next().value as NodeProcess;
        host = only.host;
        port = only.port;
      }
      return {
        region: b.region,
        first: b.first,
        count: b.count,
        host,
        port,
        path: '/ws',
        localAddresses: this.fabric
          ? (this.sourceAddresses.get(b.region) ?? [])
          : regionAddresses(Math.max(0, k), regionDevices(this.scenario, b.region)),
        ...(this.tls && {
          tls: {
            ...(this.tls.caPem && { caPem: this.tls.caPem.toString() }),
            servername: this.tls.servername,
            resume: this.scenario.devices.tlsResume,
          },
        }),
      };
    });
  }

  /** HTTP API URLs of the nodes that are up, for the publisher. */
  apiUrls(): string[] {
    return [...this.nodes.values()].filter((n) => n.state === 'up').map((n) => n.httpUrl);
  }

  /**
   * One line per profile limit that is not enforced (deduplicated across a
   * region's nodes), to print before the run: enforcement is never pretended.
   */
  limitNotes(): string[] {
    const notes = new Set<string>();
    for (const n of this.nodes.values()) {
      for (const l of n.limits) {
        if (!l.enforced)
          notes.add(
            `region ${n.region}: ${l.limit} ${l.value} not enforced: ${l.why ?? 'unknown reason'}`,
          );
      }
    }
    return [...notes];
  }

  /** Every node, for the report. */
  describe(): ClusterNode[] {
    return [...this.nodes.values()];
  }

  /** Network pid and hub pid, for the report. */
  infrastructure(): { hubPid?: number; networkPid?: number } {
    return {
      ...(this.hub && { hubPid: this.hub.pid }),
      ...(this.network && { networkPid: this.network.pid }),
    };
  }

  private requireUp(nodeId: string): NodeProcess {
    const p = this.procs.get(nodeId);
    if (!p) throw new PushbenchError('PB_INTERNAL', `node ${nodeId} is not running`);
    return p;
  }

  /** SIGKILL: the process dies at once and its sockets close. The balancer finds out by health checks. */
  async kill(nodeId: string): Promise<void> {
    const p = this.requireUp(nodeId);
    const node = this.nodes.get(nodeId)!;
    node.state = 'killed';
    p.signal('SIGKILL');
    await p.exited;
  }

  /**
   * Where node `nodeId` finds its registry and broker: Redis or the hub, through
   * its datastore link when the timeline may delay it (started once per node,
   * kept across the node's restarts, playing every standing delay that names it).
   */
  private async datastoreFor(
    nodeId: string,
    host: KernelHost | undefined,
  ): Promise<{
    redisUrl?: string;
    registryRedisUrl?: string;
    redisPrefix?: string;
    join?: string;
  }> {
    const direct = this.redisUrl ?? this.hub?.httpUrl;
    if (direct === undefined) return {};
    // Links when a fault plays on them: a delay, or a cut of a datastore pushbench does not own.
    const linked = this.scenario.timeline.some(
      (t) =>
        t.action === 'datastore-latency' || (t.action === 'datastore-down' && !this.managedRedis),
    );
    if (!linked) {
      return this.redisUrl
        ? { redisUrl: direct, redisPrefix: `pushbench:${process.pid}:` }
        : { join: direct };
    }
    // Redis: the broker's and the registry's connections each through a link of their
    // own, so a fault can slow registrations and lookups and not forwards, or the reverse.
    if (this.redisUrl) {
      return {
        redisUrl: await this.throughLink(nodeId, 'broker', direct, host),
        registryRedisUrl: await this.throughLink(nodeId, 'registry', direct, host),
        redisPrefix: `pushbench:${process.pid}:`,
      };
    }
    return { join: await this.throughLink(nodeId, 'both', direct, host) };
  }

  /** `direct` rewritten to go through node `nodeId`'s `role` link (started once, kept across restarts). */
  private async throughLink(
    nodeId: string,
    role: LinkRole,
    direct: string,
    host: KernelHost | undefined,
  ): Promise<string> {
    const url = new URL(direct);
    const key = `${nodeId}/${role}`;
    let entry = this.datastoreLinks.get(key);
    if (!entry) {
      const link = await startLink({
        name: `datastore link of ${nodeId}${role === 'both' ? '' : ` (${role})`}`,
        ...(host && { namespace: host.namespace }),
        listen: host
          ? {
              host: host.address,
              port: role === 'registry' ? KERNEL_REGISTRY_LINK_PORT : KERNEL_DATASTORE_LINK_PORT,
            }
          : { host: '127.0.0.1', port: 0 },
        target: { host: url.hostname, port: Number(url.port) || 6379 },
        seed: (this.scenario.seed * 7919 + this.datastoreLinks.size) >>> 0,
      });
      entry = { nodeId, role, link };
      this.datastoreLinks.set(key, entry);
      this.playDatastoreDelay(entry);
    }
    url.hostname = host ? host.address : '127.0.0.1';
    url.port = String(entry.link.port);
    return url.toString().replace(/\/$/, '');
  }

  /**
   * Adds a delay to the datastore links of `nodeId` (null: every node): its registry
   * link, its broker link, or both (with a hub, its one link); returns its id.
   */
  datastoreLatency(
    nodeId: string | null,
    delayMs: number,
    jitterMs: number,
    link: LinkRole = 'both',
  ): string {
    const id = `ds${++this.nextDatastoreDelay}`;
    this.datastoreDelays.set(id, { nodeId, link, delayMs, jitterMs });
    for (const entry of this.datastoreLinks.values()) this.playDatastoreDelay(entry);
    return id;
  }

  /** Lifts one datastore delay; the others standing stay. */
  clearDatastoreLatency(id: string): void {
    this.datastoreDelays.delete(id);
    for (const entry of this.datastoreLinks.values()) this.playDatastoreDelay(entry);
  }

  /** Plays the largest standing delay that reaches this link (none: no delay). */
  private playDatastoreDelay(entry: { nodeId: string; role: LinkRole; link: LatencyLink }): void {
    let largest: { delayMs: number; jitterMs: number } | undefined;
    for (const d of this.datastoreDelays.values()) {
      if (d.nodeId !== null && d.nodeId !== entry.nodeId) continue;
      if (d.link !== 'both' && entry.role !== 'both' && d.link !== entry.role) continue;
      if (!largest || d.delayMs > largest.delayMs) largest = d;
    }
    if (largest) entry.link.set(largest.delayMs, largest.jitterMs);
    else entry.link.clear();
  }

  /**
   * The nodes lose their registry and broker: the managed Redis is SIGKILLed, or, for a
   * Redis by URL or the hub, every node's datastore links are cut (each connection reset,
   * each new one reset at once).
   */
  async datastoreDown(): Promise<void> {
    if (this.managedRedis) {
      await this.managedRedis.kill();
      return;
    }
    for (const { link } of this.datastoreLinks.values()) link.cut();
  }

  /** The managed Redis starts again on its port, empty or with what it persisted; or the links are restored. */
  async datastoreRestart(data: 'empty' | 'kept'): Promise<void> {
    if (this.managedRedis) {
      await this.managedRedis.start(data);
      return;
    }
    for (const { link } of this.datastoreLinks.values()) link.restore();
  }

  /** SIGTERM: the node drains gracefully (health check fails, goaways over its drain window), then exits. */
  async stopNode(nodeId: string): Promise<void> {
    const p = this.requireUp(nodeId);
    this.nodes.get(nodeId)!.state = 'stopping';
    p.signal('SIGTERM');
    // Not awaited: a drain lasts its window; the timeline goes on meanwhile.
  }

  /** Starts a node again under the same id (a new process on a new port) and puts it behind its balancer. */
  async restart(nodeId: string): Promise<void> {
    const node = this.nodes.get(nodeId);
    if (!node) throw new PushbenchError('PB_INTERNAL', `no node ${nodeId}`);
    if (this.procs.has(nodeId))
      throw new PushbenchError('PB_INTERNAL', `node ${nodeId} is still running`);
    await this.startNode(node.region, nodeId);
    await this.network?.addBackend(node.region, this.backendOf(nodeId));
  }

  /** Adds `count` nodes to a region; the balancer takes them after their first health check. */
  async scaleUp(region: string, count: number): Promise<string[]> {
    const first = this.nextIndex.get(region) ?? 1;
    this.nextIndex.set(region, first + count);
    const ids = Array.from({ length: count }, (_, i) => nodeIdOf(region, first + i));
    await Promise.all(ids.map((id) => this.startNode(region, id)));
    for (const id of ids) await this.network?.addBackend(region, this.backendOf(id));
    return ids;
  }

  /** Removes the `count` highest-numbered running nodes of a region: out of rotation, then drained (SIGTERM) or killed. */
  async scaleDown(region: string, count: number, graceful: boolean): Promise<string[]> {
    const victims = [...this.nodes.values()]
      .filter((n) => n.region === region && n.state === 'up')
      .sort((a, b) => nodeNumber(a.nodeId) - nodeNumber(b.nodeId))
      .slice(-count)
      .map((n) => n.nodeId);
    for (const id of victims) {
      await this.network?.removeBackend(region, id);
      if (graceful) await this.stopNode(id);
      else await this.kill(id);
    }
    return victims;
  }

  /** Puts a fault on the network; throws when the topology has no network. */
  async applyFault(fault: NetworkFault): Promise<string> {
    if (!this.network) {
      throw new PushbenchError(
        'PB_INTERNAL',
        `${fault.kind} needs the network fabric, and this run has none`,
      );
    }
    return this.network.applyFault(fault);
  }

  async clearFault(id: string): Promise<void> {
    await this.network?.clearFault(id);
  }

  async clearScope(scope: FaultScope): Promise<void> {
    await this.network?.clearScope(scope);
  }

  /** Connections each running node reports holding (its own /metrics.json). */
  async sampleNodes(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    await Promise.all(
      [...this.nodes.values()]
        .filter((n) => n.state === 'up' || n.state === 'stopping')
        .map(async (n) => {
          try {
            const res = await fetch(`${n.httpUrl}/metrics.json`, {
              signal: AbortSignal.timeout(800),
            });
            const body = (await res.json()) as { connections?: number };
            if (typeof body.connections === 'number') out[n.nodeId] = body.connections;
          } catch {
            // A node that does not answer has no count this second.
          }
        }),
    );
    return out;
  }

  /** The balancers' view (per backend connections, health), when there is a network. */
  async sampleNetwork(): Promise<NetworkSample | undefined> {
    return this.network?.sample();
  }

  /** Final counts of every running node, for the report. */
  async nodeMetrics(): Promise<Array<Record<string, unknown>>> {
    return Promise.all(
      [...this.nodes.values()]
        .filter((n) => n.state === 'up' || n.state === 'stopping')
        .map(async (n) => {
          try {
            const res = await fetch(`${n.httpUrl}/metrics.json`, {
              signal: AbortSignal.timeout(2000),
            });
            return (await res.json()) as Record<string, unknown>;
          } catch (err) {
            return { nodeId: n.nodeId, error: `metrics unavailable: ${(err as Error).message}` };
          }
        }),
    );
  }

  /** Stops everything: network first (so nothing reconnects through it), then nodes, then the hub. */
  async stop(): Promise<void> {
    this.stopping = true;
    try {
      await this.network?.stop().catch(() => {});
      await Promise.all([...this.procs.values()].map((p) => p.stop(3000)));
      // Nodes that died earlier: their cgroups are removed by the time these resolve.
      await Promise.all(this.lifeEnds);
      await this.hub?.stop(3000);
      await this.managedRedis?.stop();
      for (const link of this.links.values()) link.stop();
      for (const { link } of this.datastoreLinks.values()) link.stop();
      // Last: kills whatever still runs on the hosts, removes namespaces, links and rules.
      await this.fabric?.destroy();
    } finally {
      // The run's private keys go whatever else failed.
      this.tls?.remove();
    }
  }

  /**
   * A node's TLS flags: the run's certificate, plain too on the same port (the
   * harness's API calls and health checks stay plain), and the shared ticket
   * keys unless each node is to have its own.
   */
  private tlsArgs(): string[] {
    const t = this.tls;
    if (!t || this.scenario.topology.tls?.at !== 'node') return [];
    const args = [
      '--tls-cert',
      t.server.certFile,
      '--tls-key',
      t.server.keyFile,
      '--tls-and-plain',
    ];
    if (this.scenario.topology.tls?.tickets === 'shared') {
      args.push('--tls-ticket-keys', t.ticketKeysFile);
    }
    return args;
  }

  /** With TLS at the balancer: HAProxy's certificate file, and the shared ticket keys unless per process. */
  private balancerTls(): { tls?: { pemFile: string; ticketKeysFile?: string } } {
    const t = this.tls;
    if (!t || this.scenario.topology.tls?.at !== 'balancer') return {};
    return {
      tls: {
        pemFile: t.combinedPemFile,
        ...(this.scenario.topology.tls.tickets === 'shared' && {
          ticketKeysFile: t.haproxyTicketKeysFile,
        }),
      },
    };
  }
}

/** The IPv4 address of a Redis URL's host, when it is written as one (the kernel engine cuts by address). */
function redisAddresses(url: string | null): string[] {
  if (url === null) return [];
  try {
    const host = new URL(url).hostname;
    return /^\d{1,3}(?:\.\d{1,3}){3}$/.test(host) ? [host] : [];
  } catch {
    return [];
  }
}
