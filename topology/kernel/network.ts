/**
 * The kernel engine as the cluster's network (the same {@link NetworkHandle}
 * the userland fabric process offers): each region's balancer is a real
 * HAProxy or the kernel's own DNAT on a balancer host of the fabric, and every
 * fault is played by the kernel on the hosts of the nodes it names. No process
 * of ours carries a device's bytes.
 *
 * Faults by kind: blackhole, conntrack-limit and admission-rate are nft
 * tables on each node host in scope (faults.ts); reset aborts the node's
 * established connections (`ss -K`); latency is refused (no netem here; see
 * engine.ts). A region scope covers the region's nodes, those that join it
 * while the fault stands too ({@link KernelNetwork.nodeJoined}).
 */
import { PushbenchError } from '../../core/errors.js';
import { ephemeralPorts, openFilesLimit } from '../../core/machine.js';
import { addressesFor } from '../../loadgen/placement.js';
import { type NetworkHandle, startNetworkProcess } from '../network/handle.js';
import { probeHealthz } from '../network/health.js';
import type {
  BackendSample,
  BackendSpec,
  FaultScope,
  NetworkAddresses,
  NetworkFault,
  NetworkSample,
  NetworkSpec,
} from '../network/types.js';
import { type KernelBackend, KernelBalancer } from './balancer.js';
import { execIn } from './commands.js';
import type { KernelFabric, KernelHost } from './fabric.js';
import {
  addKernelFault,
  capBandwidth,
  type KernelFault,
  type KernelFaultHandle,
  resetConnections,
} from './faults.js';
import { Haproxy, haproxyMaxconn, haproxyProcesses } from './haproxy.js';
import type { LatencyLink } from './links.js';

/** Where devices reach a region's balancer on the fabric. */
export const BALANCER_PORT = 7000;
/** HAProxy regions' source addresses are `10.N.<block>.k`, from this block down (the decision point has 199). */
const HAPROXY_SOURCE_BLOCK = 198;

/** One region as the kernel network runs it. */
export interface KernelRegionSpec {
  name: string;
  engine: 'haproxy' | 'kernel';
  algorithm: string;
  slowStartMs: number;
  health: { intervalMs: number; timeoutMs: number; fall: number; rise: number };
  /** With every node failing its checks, the DNAT set keeps all of them (kernel engine only). */
  failOpen?: boolean;
  /** HAProxy retries a failed connect on another node (`option redispatch 1`). */
  redispatch?: boolean;
  backends: BackendSpec[];
  /** Devices homed in the region: how many HAProxy processes it needs. */
  devices: number;
  /** HAProxy ends the devices' TLS (`topology.tls: "balancer"`). */
  tls?: { pemFile: string; ticketKeysFile?: string };
}

type RegionBalancer =
  | { kind: 'haproxy'; lb: Haproxy; spec: KernelRegionSpec }
  | {
      kind: 'kernel';
      lb: KernelBalancer;
      spec: KernelRegionSpec;
      health: KernelHealth;
      sessions: ConntrackCounts;
    };

/**
 * pushbench's own health checker for the kernel balancer: GET /healthz of each
 * backend every interval; `fall` failures take it out of the DNAT map, `rise`
 * successes put it back.
 */
class KernelHealth {
  private readonly state = new Map<string, { healthy: boolean; streak: number; starved: number }>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly lb: KernelBalancer,
    private readonly spec: KernelRegionSpec,
    readonly backends: Map<string, KernelBackend>,
  ) {
    for (const id of backends.keys()) this.state.set(id, { healthy: true, streak: 0, starved: 0 });
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.spec.health.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  healthy(nodeId: string): boolean {
    return this.state.get(nodeId)?.healthy ?? false;
  }

  /** Its checks that timed out while it starved for a CPU, counted neither way. */
  starved(nodeId: string): number {
    return this.state.get(nodeId)?.starved ?? 0;
  }

  add(b: KernelBackend): Promise<void> {
    this.backends.set(b.nodeId, b);
    this.state.set(b.nodeId, {
      healthy: true,
      streak: 0,
      starved: this.state.get(b.nodeId)?.starved ?? 0,
    });
    return this.apply();
  }

  remove(nodeId: string): Promise<void> {
    this.backends.delete(nodeId);
    this.state.delete(nodeId);
    return this.apply();
  }

  private apply(): Promise<void> {
    const all = [...this.backends.values()];
    const healthy = all.filter((b) => this.healthy(b.nodeId));
    // Failing open: with none passing, every node stays in the set rather than none.
    return this.lb.setBackends(healthy.length === 0 && this.spec.failOpen ? all : healthy);
  }

  private async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      let changed = false;
      await Promise.all(
        [...this.backends.values()].map(async (b) => {
          const check = await probeHealthz(b.address, b.port, null, this.spec.health.timeoutMs, {
            pid: b.pid,
          });
          const s = this.state.get(b.nodeId);
          if (!s) return;
          if (check === 'starved') {
            s.starved++;
            return;
          }
          const ok = check === 'up';
          if (ok === s.healthy) {
            s.streak = 0;
            return;
          }
          s.streak++;
          if (s.streak >= (ok ? this.spec.health.rise : this.spec.health.fall)) {
            s.healthy = ok;
            s.streak = 0;
            changed = true;
          }
        }),
      );
      if (changed) await this.apply();
    } finally {
      this.busy = false;
    }
  }
}

/**
 * Counts the balancer host's established conntrack entries per backend address
 * (the kernel balancer's sessions), read from `/proc/net/nf_conntrack`. The
 * kernel formats every entry as text for that read: at 130,000 entries one read
 * cost a third of a second of CPU, at nice 0, ahead of the nodes under test
 * (bench/RESULTS.md). So reads are paced by their own cost: the next one waits
 * {@link CONNTRACK_READ_SPACING} times as long as the last took, at least a
 * second, and samples in between repeat the last counts.
 */
class ConntrackCounts {
  private counts = new Map<string, number>();
  private nextAtMs = 0;
  private reading: Promise<void> | undefined;

  constructor(private readonly host: KernelHost) {}

  async current(): Promise<ReadonlyMap<string, number>> {
    if (!this.reading && performance.now() >= this.nextAtMs) {
      this.reading = this.read().finally(() => {
        this.reading = undefined;
      });
    }
    await this.reading;
    return this.counts;
  }

  private async read(): Promise<void> {
    const started = performance.now();
    let text = '';
    try {
      text = await execIn(this.host.namespace, 'cat', ['/proc/net/nf_conntrack']);
    } catch {
      // Gone with its host at the end of a run: keep the last counts.
    }
    if (text !== '') this.counts = establishedByBackend(text);
    const took = performance.now() - started;
    this.nextAtMs = performance.now() + Math.max(1000, took * CONNTRACK_READ_SPACING);
  }
}

/** A read of the conntrack table is followed by this many times its own duration without one (5 % of a core at most). */
const CONNTRACK_READ_SPACING = 20;

/** Established entries by the address of the backend each was translated to, from `/proc/net/nf_conntrack`. */
export function establishedByBackend(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end === -1) end = text.length;
    const established = text.indexOf(' ESTABLISHED ', at);
    if (established !== -1 && established < end) {
      // The reply direction's source (the second src=) is the backend.
      const first = text.indexOf(' src=', at);
      const second = first === -1 ? -1 : text.indexOf(' src=', first + 5);
      if (second !== -1 && second < end) {
        const stop = text.indexOf(' ', second + 5);
        const backend = text.slice(second + 5, stop === -1 || stop > end ? end : stop);
        out.set(backend, (out.get(backend) ?? 0) + 1);
      }
    }
    at = end + 1;
  }
  return out;
}

/**
 * pushbench's builtin balancers, and the global entry, on the kernel engine:
 * the userland network in hand-off mode (topology/network/relays.ts) on a
 * balancer host of its own. It picks a node for each device exactly as on
 * userland and hands the socket to relay processes on the same host, as many
 * as the devices need under the open-file limit; faults stay in the kernel.
 */
export interface DecisionSpec {
  /** The regions it balances and the global entry (health routing), with the relay count; `host` is set here. */
  spec: Omit<NetworkSpec, 'host'>;
  /**
   * Regions the global entry also routes to whose balancers this network runs
   * (HAProxy, DNAT): their addresses are filled in once those have started.
   */
  external: string[];
  /** Devices the relays may carry at once: how many source addresses they need. */
  devices: number;
}

/** Where the nodes' shared registry and broker live. */
export interface DatastorePlace {
  /** The hub's host, or Redis's IPv4 address; empty when it is in the node's own process. */
  addresses: string[];
  /** The region that holds it (`topology.datastoreRegion`): a partition across regions cuts the other side from it. */
  region: string;
}

/** The kernel engine's network for one run. */
export class KernelNetwork implements NetworkHandle {
  private readonly regions = new Map<string, RegionBalancer>();
  /** The builtin balancers' decision point, and the regions it balances. */
  private decision: { handle: NetworkHandle; host: KernelHost; regions: Set<string> } | undefined;
  private readonly faults = new Map<string, StandingFault>();
  private nextFault = 0;
  /** Latency faults standing on each node's link, by fault id: the largest delay is played. */
  private readonly latencies = new Map<string, Map<string, LatencySetting>>();

  private constructor(
    /**
     * What a blackhole leaves in reach of a node: the harness's control plane
     * (the coordinator: publisher, metrics; the hub) and the nodes' own hosts
     * (their peer links), now.
     */
    private readonly controlAddresses: () => string[],
    /** Where the nodes' shared registry and broker live (the hub's host, or Redis). */
    private readonly datastore: DatastorePlace,
    /** A node's latency link, when it has one. */
    private readonly linkOf: (nodeId: string) => LatencyLink | undefined,
    /** The host of each node, and the region it is in. */
    private readonly hostOf: (
      nodeId: string,
    ) => { host: KernelHost; region: string; port: number } | undefined,
    private readonly nodesOf: (scope: FaultScope) => string[],
  ) {}

  /** HAProxy's pid, or the builtin balancers' decision point's, or 0 with the kernel balancer only (no process of ours). */
  get pid(): number {
    for (const r of this.regions.values()) if (r.kind === 'haproxy') return r.lb.pid;
    return this.decision?.handle.pid ?? 0;
  }

  /** Starts each region's balancer on its own host of `fabric`. */
  static async start(
    fabric: KernelFabric,
    regions: KernelRegionSpec[],
    hostOf: (nodeId: string) => { host: KernelHost; region: string; port: number } | undefined,
    linkOf: (nodeId: string) => LatencyLink | undefined,
    nodesOf: (scope: FaultScope) => string[],
    controlAddresses: () => string[],
    datastore: DatastorePlace,
    decision: DecisionSpec | null = null,
  ): Promise<KernelNetwork> {
    const net = new KernelNetwork(controlAddresses, datastore, linkOf, hostOf, nodesOf);
    let haproxyRegions = 0;
    try {
      for (const spec of regions) {
        const backends = spec.backends.map(
          (b): KernelBackend => ({
            nodeId: b.nodeId,
            address: b.host,
            port: b.port,
            pid: b.pid,
          }),
        );
        if (spec.engine === 'haproxy') {
          const host = await fabric.addHost(
            `lb-${spec.name}`.toLowerCase().replace(/[^a-z0-9-]/g, '-'),
          );
          // HAProxy inherits this process's open-file limit.
          const processes = haproxyProcesses(spec.devices, openFilesLimit());
          // Each process connects from an address of its own (haproxy.ts), in a block per
          // region below the decision point's 199.
          const block = HAPROXY_SOURCE_BLOCK - haproxyRegions++;
          if (block < 100 || processes > 254) {
            throw new PushbenchError(
              'PB_USAGE',
              `the kernel engine runs at most 99 HAProxy regions of at most 254 processes each (region ${spec.name}: ${processes})`,
            );
          }
          const lb = await Haproxy.start({
            name: spec.name.replace(/[^A-Za-z0-9._-]/g, '_'),
            host,
            bindAddress: host.address,
            port: BALANCER_PORT,
            algorithm: spec.algorithm,
            health: spec.health,
            slowStartMs: spec.slowStartMs,
            redispatch: spec.redispatch,
            backends,
            processes,
            maxconn: haproxyMaxconn(openFilesLimit()),
            sourceAddresses: await fabric.addHostAddresses(host, processes, block),
            ...(spec.tls && { tls: spec.tls }),
          });
          net.regions.set(spec.name, { kind: 'haproxy', lb, spec });
        } else {
          const lb = await KernelBalancer.start(
            fabric,
            spec.name.toLowerCase().replace(/[^a-z0-9-]/g, '-'),
            { algorithm: spec.algorithm, port: BALANCER_PORT, backends },
          );
          const health = new KernelHealth(lb, spec, new Map(backends.map((b) => [b.nodeId, b])));
          health.start();
          net.regions.set(spec.name, {
            kind: 'kernel',
            lb,
            spec,
            health,
            sessions: new ConntrackCounts(lb.host),
          });
        }
      }
      if (decision) {
        // The global entry reaches the other engines' balancers at their addresses.
        const own = await net.addresses();
        const external = decision.external.map((name) => {
          const at = own.regions[name];
          if (!at) throw new PushbenchError('PB_INTERNAL', `no balancer for region ${name}`);
          // A region whose HAProxy ends TLS is checked over TLS.
          const tls = regions.find((r) => r.name === name)?.tls !== undefined;
          return { name, ...at, ...(tls && { tls: true }) };
        });
        const spec = decision.spec.global
          ? {
              ...decision.spec,
              global: { ...decision.spec.global, ...(external.length > 0 && { external }) },
            }
          : decision.spec;
        // Not `lb-<name>` as the other balancers' hosts: a region may be called `builtin`.
        const host = await fabric.addHost('builtin-lb');
        // The relays open every device's connection to its node from this host: spread
        // them over source addresses as the fleet spreads its own (about 2,048 each).
        const relays = spec.relays;
        const sourceAddresses =
          relays === undefined
            ? []
            : await fabric.addHostAddresses(
                host,
                Math.min(254, addressesFor(decision.devices, ephemeralPorts())),
              );
        const handle = await startNetworkProcess(
          {
            ...spec,
            host: host.address,
            ...(relays && { relays: { ...relays, sourceAddresses } }),
          },
          host.namespace,
        );
        net.decision = {
          handle,
          host,
          regions: new Set(decision.spec.regions.map((r) => r.name)),
        };
      }
    } catch (err) {
      await net.stop();
      throw err;
    }
    return net;
  }

  private region(name: string): RegionBalancer {
    const r = this.regions.get(name);
    if (!r) throw new PushbenchError('PB_INTERNAL', `no balancer for region ${name}`);
    return r;
  }

  async addresses(): Promise<NetworkAddresses> {
    const decided = await this.decision?.handle.addresses();
    const regions: NetworkAddresses['regions'] = { ...decided?.regions };
    for (const [name, r] of this.regions) {
      regions[name] = {
        host: r.kind === 'haproxy' ? r.lb.options.bindAddress : r.lb.address,
        port: BALANCER_PORT,
      };
    }
    return decided?.global ? { regions, global: decided.global } : { regions };
  }

  async addBackend(region: string, backend: BackendSpec): Promise<void> {
    // The standing faults reach it before any device can.
    await this.nodeJoined(backend.nodeId);
    if (this.decision?.regions.has(region)) {
      await this.decision.handle.addBackend(region, backend);
      return;
    }
    const r = this.region(region);
    const b: KernelBackend = {
      nodeId: backend.nodeId,
      address: backend.host,
      port: backend.port,
      pid: backend.pid,
    };
    if (r.kind === 'haproxy') {
      const known = await r.lb.servers();
      // A restarted node comes back on its host's address and port: its server is
      // pointed there again and put back in rotation.
      if (known[b.nodeId] !== undefined) await r.lb.readyAgain(b);
      else await r.lb.addServer(b);
    } else {
      await r.health.add(b);
    }
  }

  async removeBackend(region: string, nodeId: string): Promise<void> {
    if (this.decision?.regions.has(region)) {
      await this.decision.handle.removeBackend(region, nodeId);
      return;
    }
    const r = this.region(region);
    if (r.kind === 'haproxy') await r.lb.drain(nodeId);
    else await r.health.remove(nodeId);
  }

  async applyFault(fault: NetworkFault): Promise<string> {
    const id = `k${++this.nextFault}`;
    const standing: StandingFault = { fault, on: new Map() };
    try {
      for (const nodeId of this.nodesOf(fault.scope)) await this.place(id, standing, nodeId);
      if (fault.kind === 'partition' && fault.from.kind === 'peers' && standing.on.size === 0) {
        throw new PushbenchError(
          'PB_USAGE',
          'partition from peers: no node in scope has another node of its region running',
        );
      }
      if (fault.kind === 'partition' && fault.from.kind === 'region') {
        for (const nodeId of this.nodesOf({ region: fault.from.region })) {
          await this.placeOtherSide(standing, nodeId);
        }
      }
    } catch (err) {
      for (const h of standing.on.values()) await h.remove().catch(() => {});
      throw err;
    }
    if (fault.kind !== 'reset') this.faults.set(id, standing);
    return id;
  }

  /**
   * A node started after faults began (a scale-up, or a restart on its own
   * host): each standing fault whose scope covers it is put on its host too, and
   * those that name the other nodes' hosts (a blackhole's spared peers, a
   * partition's sides) name it as well. A restarted node's host kept its tables;
   * only the addresses are named again, which changes nothing.
   */
  async nodeJoined(nodeId: string): Promise<void> {
    const at = this.hostOf(nodeId);
    if (!at) return;
    const address = [at.host.address];
    for (const [id, standing] of this.faults) {
      try {
        await this.join(id, standing, nodeId, at.region, address);
      } catch (err) {
        // Nothing left to cut it from (the other side's nodes are all gone): the node
        // joins without this fault, as it would have started.
        if (!(err instanceof PushbenchError && err.code === 'PB_USAGE')) throw err;
      }
    }
  }

  private async join(
    id: string,
    standing: StandingFault,
    nodeId: string,
    region: string,
    address: string[],
  ): Promise<void> {
    const { fault } = standing;
    const inScope = this.covers(fault.scope, nodeId);
    if (inScope) await this.place(id, standing, nodeId);
    if (fault.kind === 'blackhole') {
      for (const [other, h] of standing.on) if (other !== nodeId) await h.widen(address);
      return;
    }
    if (fault.kind !== 'partition' || fault.from.kind === 'datastore') return;
    const { from } = fault;
    if (from.kind === 'region' && region === from.region) {
      await this.placeOtherSide(standing, nodeId);
    }
    // The nodes across the cut from it drop it too.
    for (const [other, h] of standing.on) {
      if (other === nodeId) continue;
      const across =
        from.kind === 'peers'
          ? this.hostOf(other)?.region === region
          : (inScope && this.hostOf(other)?.region === from.region) ||
            (region === from.region && this.covers(fault.scope, other));
      if (across) await h.widen(address);
    }
  }

  private covers(scope: FaultScope, nodeId: string): boolean {
    return 'nodeId' in scope
      ? scope.nodeId === nodeId
      : this.hostOf(nodeId)?.region === scope.region;
  }

  /** Puts the fault on one node of its scope, unless it stands there already. */
  private async place(id: string, standing: StandingFault, nodeId: string): Promise<void> {
    const { fault } = standing;
    if (standing.on.has(nodeId)) return;
    const n = this.hostOf(nodeId);
    if (fault.kind === 'latency') {
      const link = this.linkOf(nodeId);
      if (!link) throw new PushbenchError('PB_INTERNAL', `node ${nodeId} has no latency link`);
      const settings = this.latencies.get(nodeId) ?? new Map<string, LatencySetting>();
      this.latencies.set(nodeId, settings);
      settings.set(id, { delayMs: fault.delayMs, jitterMs: fault.jitterMs });
      applyLargest(link, settings);
      if (n) {
        standing.on.set(nodeId, {
          host: n.host,
          table: 'latency link',
          widen: async () => {},
          remove: async () => {
            settings.delete(id);
            applyLargest(link, settings);
          },
        });
      }
      return;
    }
    if (!n) return;
    if (fault.kind === 'reset') {
      await resetConnections(n.host, n.port);
      return;
    }
    if (fault.kind === 'bandwidth') {
      standing.on.set(nodeId, await capBandwidth(n.host, fault.bitsPerSec));
      return;
    }
    const rules = this.rulesFor(fault, n);
    if (rules) standing.on.set(nodeId, await addKernelFault(n.host, rules));
  }

  /** The nft fault a node's host plays for `fault`; undefined: nothing to cut (no peers). */
  private rulesFor(
    fault: Exclude<NetworkFault, { kind: 'latency' | 'reset' | 'bandwidth' }>,
    n: { host: KernelHost; region: string; port: number },
  ): KernelFault | undefined {
    switch (fault.kind) {
      case 'blackhole':
        // The devices' side goes dark, as on userland; the harness's control plane
        // (hub, the publisher's HTTP API, metrics) and the other nodes still reach it.
        return {
          kind: 'blackhole',
          except: this.controlAddresses().filter((a) => a !== n.host.address),
        };
      case 'conntrack-limit':
        return { kind: 'conntrack-limit', port: n.port, table: fault.table };
      case 'admission-rate':
        return {
          kind: 'admission-rate',
          port: n.port,
          ratePerSec: Math.max(1, Math.round(fault.ratePerSec)),
          burst: Math.max(1, Math.round(fault.burst)),
        };
      case 'partition': {
        const peers =
          fault.from.kind === 'datastore'
            ? this.datastoreAddresses()
            : fault.from.kind === 'peers'
              ? this.peersOf(n.host.address, n.region)
              : this.regionPeers(fault.from.region, fault.scope);
        return peers.length > 0 ? { kind: 'partition', peers } : undefined;
      }
    }
  }

  /**
   * The named region's side of a partition across regions, on one of its nodes:
   * it drops the scope's nodes, and the datastore too when the scope is the whole
   * region that holds it.
   */
  private async placeOtherSide(standing: StandingFault, nodeId: string): Promise<void> {
    const { fault } = standing;
    const other = this.hostOf(nodeId);
    if (!other || standing.on.has(nodeId) || fault.kind !== 'partition') return;
    const holdsDatastore = 'region' in fault.scope && fault.scope.region === this.datastore.region;
    const peers = [
      ...this.nodesOf(fault.scope)
        .map((id) => this.hostOf(id)?.host.address)
        .filter((a): a is string => a !== undefined),
      ...(holdsDatastore ? this.datastoreAddresses() : []),
    ];
    if (peers.length > 0) {
      standing.on.set(nodeId, await addKernelFault(other.host, { kind: 'partition', peers }));
    }
  }

  /** The datastore's addresses, or one line why a partition cannot cut it. */
  private datastoreAddresses(): string[] {
    if (this.datastore.addresses.length === 0) {
      throw new PushbenchError(
        'PB_USAGE',
        'partition from the datastore needs one the nodes share across the network (a hub or Redis)',
      );
    }
    return this.datastore.addresses;
  }

  /** The hosts of the other running nodes of `region`, but the one at `self`. */
  private peersOf(self: string, region: string): string[] {
    return this.nodesOf({ region })
      .map((id) => this.hostOf(id)?.host.address)
      .filter((a): a is string => a !== undefined && a !== self);
  }

  /**
   * What the scope's nodes drop when cut from `region`: that region's nodes,
   * and the datastore when `region` holds it.
   */
  private regionPeers(region: string, scope: FaultScope): string[] {
    const own = new Set(this.nodesOf(scope));
    const peers = this.nodesOf({ region })
      .filter((id) => !own.has(id))
      .map((id) => this.hostOf(id)?.host.address)
      .filter((a): a is string => a !== undefined);
    if (region === this.datastore.region) peers.push(...this.datastoreAddresses());
    if (peers.length === 0) {
      throw new PushbenchError(
        'PB_USAGE',
        `partition from region ${region}: it has no node running`,
      );
    }
    return peers;
  }

  async clearFault(id: string): Promise<void> {
    const f = this.faults.get(id);
    if (!f) return;
    this.faults.delete(id);
    for (const h of f.on.values()) await h.remove();
  }

  async clearScope(scope: FaultScope): Promise<void> {
    const same = (a: FaultScope) =>
      'region' in scope
        ? 'region' in a && a.region === scope.region
        : 'nodeId' in a && a.nodeId === scope.nodeId;
    for (const [id, f] of [...this.faults]) {
      if (!f.fault.standing && same(f.fault.scope)) await this.clearFault(id);
    }
  }

  async sample(): Promise<NetworkSample> {
    const decided = await this.decision?.handle.sample();
    const backends: BackendSample[] = [...(decided?.backends ?? [])];
    const regions: NetworkSample['regions'] = { ...decided?.regions };
    for (const [name, r] of this.regions) {
      let total = 0;
      if (r.kind === 'haproxy') {
        const servers = await r.lb
          .servers()
          .catch(() => ({}) as Awaited<ReturnType<Haproxy['servers']>>);
        for (const [nodeId, s] of Object.entries(servers)) {
          const up = s.status.startsWith('UP');
          backends.push({
            ...sampleOf(nodeId, name, s.sessions, up, up && !s.status.includes('DRAIN')),
            retries: s.retries,
            redispatches: s.redispatches,
          });
          total += s.sessions;
        }
      } else {
        const counts = await r.sessions.current();
        // In the DNAT set: the healthy ones, or all of them when the region fails open.
        const inSet = new Set(r.lb.current().map((b) => b.nodeId));
        for (const b of r.health.backends.values()) {
          const n = counts.get(b.address) ?? 0;
          const healthy = r.health.healthy(b.nodeId);
          backends.push(
            sampleOf(b.nodeId, name, n, healthy, inSet.has(b.nodeId), r.health.starved(b.nodeId)),
          );
          total += n;
        }
      }
      regions[name] = { connections: total, noBackend: 0, admissionRejected: 0, resets: 0 };
    }
    return {
      atMs: Date.now(),
      backends,
      regions,
      ...(decided?.global && { global: decided.global }),
    };
  }

  async stop(): Promise<void> {
    await this.decision?.handle.stop().catch(() => {});
    for (const r of this.regions.values()) {
      if (r.kind === 'haproxy') await r.lb.stop();
      else r.health.stop();
    }
    for (const f of this.faults.values())
      for (const h of f.on.values()) await h.remove().catch(() => {});
    this.faults.clear();
  }
}

function sampleOf(
  nodeId: string,
  region: string,
  connections: number,
  healthy: boolean,
  inRotation: boolean,
  checksStarved = 0,
): BackendSample {
  return {
    nodeId,
    region,
    connections,
    accepted: 0,
    healthy,
    inRotation,
    weight: 1,
    conntrackHeld: 0,
    conntrackTimedOut: 0,
    healthChangedAtMs: null,
    checksStarved,
  };
}

/** A fault standing on the network: its tables (or latency setting) on each node's host. */
interface StandingFault {
  fault: NetworkFault;
  /** By node: the fault in scope, or, for a partition across regions, the named region's side. */
  on: Map<string, KernelFaultHandle>;
}

/** One latency fault's delay on a link. */
interface LatencySetting {
  delayMs: number;
  jitterMs: number;
}

/**
 * Plays the standing latency with the largest delay on `link` (its own jitter),
 * as the userland fabric does with overlapping latencies; none standing: no delay.
 */
function applyLargest(link: LatencyLink, standing: Map<string, LatencySetting>): void {
  let largest: LatencySetting | undefined;
  for (const l of standing.values()) if (!largest || l.delayMs > largest.delayMs) largest = l;
  if (largest) link.set(largest.delayMs, largest.jitterMs);
  else link.clear();
}
