import { monoNowUs } from '../../core/clock.js';
import { PushbenchError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { TokenBucket } from '../../server/rate-limit.js';
import { type NodeAdmission, RegionBalancer } from './balancer.js';
import { ExternalRegion, GlobalEntry, type RoutedRegion } from './global-entry.js';
import { Link, type LinkFaults } from './link.js';
import { RelayPool } from './relays.js';
import { parseNetworkSpec } from './spec.js';
import {
  type AddBackendOptions,
  type BackendSpec,
  DEFAULT_SYN_RETRIES_S,
  type FaultScope,
  type NetworkAddresses,
  type NetworkFault,
  type NetworkSample,
  type NetworkSpec,
  REDISPATCHES,
} from './types.js';

/** Relay mode's names of the listening sockets it shares: a region's balancer, the global entry. */
const REGION_ENTRY = 'region:';
const GLOBAL_ENTRY = 'global';

/** A standing fault; admission-rate faults own their bucket, shared by all they cover. */
interface FaultRecord {
  fault: NetworkFault;
  bucket: TokenBucket | null;
}

/** A node's fault state, kept by node id so a restarted node keeps its faults. */
interface NodeParts {
  region: string;
  faults: LinkFaults;
  admission: NodeAdmission;
  link: Link;
}

function inScope(scope: FaultScope, region: string, nodeId: string): boolean {
  return 'region' in scope ? scope.region === region : scope.nodeId === nodeId;
}

function sameScope(a: FaultScope, b: FaultScope): boolean {
  return 'region' in a
    ? 'region' in b && a.region === b.region
    : 'nodeId' in b && a.nodeId === b.nodeId;
}

/**
 * The network fabric in one process: every region's balancer, the optional
 * global entry, and the fault table that sets each link's faults. Usable
 * in-process (tests) or inside the network child process.
 */
export class Network {
  private readonly balancers = new Map<string, RegionBalancer>();
  private readonly nodes = new Map<string, NodeParts>();
  private readonly faults = new Map<string, FaultRecord>();
  private readonly ports = new Map<string, number>();
  private global: GlobalEntry | undefined;
  private globalPort = 0;
  private nextFault = 1;
  private readonly rng: Rng;
  private links = 0;
  private stopping: Promise<void> | undefined;
  /** Relay mode: the relays that accept and carry every device. */
  private relays: RelayPool | undefined;

  private constructor(private readonly spec: NetworkSpec) {
    this.rng = new Rng(spec.seed);
  }

  /** Checks the spec, listens everywhere, runs a first round of health checks, then resolves. */
  static async start(input: NetworkSpec): Promise<Network> {
    const spec = parseNetworkSpec(input);
    const network = new Network(spec);
    try {
      await network.open();
    } catch (err) {
      await network.stop();
      throw err;
    }
    return network;
  }

  private async open(): Promise<void> {
    const spec = this.spec;
    spec.regions.forEach((region, i) => {
      const balancer = new RegionBalancer({
        name: region.name,
        host: spec.host,
        algorithm: region.algorithm,
        slowStartMs: region.slowStartMs,
        health: region.health,
        ...(region.failOpen === true && { failOpen: true }),
        ...(region.redispatch === true && { redispatch: true }),
        ...(region.maxConnecting !== undefined && { maxConnecting: region.maxConnecting }),
        ...(region.queueTimeoutMs !== undefined && { queueTimeoutMs: region.queueTimeoutMs }),
        synRetriesS: spec.synRetriesS ?? DEFAULT_SYN_RETRIES_S,
        rng: this.rng.fork(i),
      });
      this.balancers.set(region.name, balancer);
      for (const b of region.backends) this.addBackend(region.name, b);
    });
    for (const [name, balancer] of this.balancers) this.ports.set(name, await balancer.listen());
    await Promise.all([...this.balancers.values()].map((b) => b.start()));
    if (spec.global) {
      const routed: RoutedRegion[] = [
        ...this.balancers.values(),
        ...(spec.global.external ?? []).map((e) => new ExternalRegion(e)),
      ];
      const order = spec.global.order ?? routed.map((r) => r.name);
      this.global = new GlobalEntry(
        { ...spec.global, host: spec.host },
        order.map((name) => routed.find((r) => r.name === name)!),
      );
      this.globalPort = await this.global.listen();
    }
    if (spec.relays !== undefined) {
      await this.startRelays(
        spec.relays.count,
        spec.relays.openFiles,
        spec.relays.sourceAddresses ?? [],
      );
    }
  }

  /**
   * Relay mode: the relays take over every listening socket and ask here,
   * per device, which node it goes to; this process then holds no device.
   */
  private async startRelays(
    count: number,
    openFiles: number | null,
    sourceAddresses: string[],
  ): Promise<void> {
    const global = this.global;
    const relays = await RelayPool.start(
      count,
      openFiles,
      sourceAddresses,
      this.spec.regions.some((r) => r.redispatch === true) ? REDISPATCHES : 0,
      (entry, address, tried) => {
        const balancer =
          entry === GLOBAL_ENTRY
            ? global?.chooseRegion(address)
            : this.balancers.get(entry.slice(REGION_ENTRY.length));
        // A region balanced outside: the device is carried to its balancer (counted there).
        if (balancer instanceof ExternalRegion) {
          return { nodeId: '', host: balancer.spec.host, port: balancer.spec.port };
        }
        if (tried.length > 0 && !balancer?.options.redispatch) return { refuse: 'reset' };
        const choice = balancer?.choose(monoNowUs() / 1000, tried) ?? 'close';
        if (choice === 'reset' || choice === 'close') return { refuse: choice };
        // A redispatch: the node that refused last counts it, as HAProxy's wredis.
        const refusedBy = tried.length > 0 ? balancer?.get(tried[tried.length - 1]!) : undefined;
        if (refusedBy) refusedBy.redispatches++;
        choice.carried++;
        const maxConnecting = balancer?.options.maxConnecting;
        const queueTimeoutMs = balancer?.options.queueTimeoutMs;
        return {
          nodeId: choice.nodeId,
          host: choice.host,
          port: choice.port,
          ...(maxConnecting !== undefined && { maxConnecting }),
          ...(maxConnecting !== undefined && queueTimeoutMs !== undefined && { queueTimeoutMs }),
        };
      },
      (nodeId, n, queue) => {
        const backend = this.balancers.get(this.nodes.get(nodeId)?.region ?? '')?.get(nodeId);
        if (!backend) return;
        backend.carried -= n;
        backend.queueAbandoned += queue.abandoned;
        backend.queueTimedOut += queue.timedOut;
      },
    );
    this.relays = relays;
    for (const [name, balancer] of this.balancers) {
      await relays.share(`${REGION_ENTRY}${name}`, balancer.listener);
    }
    if (global) await relays.share(GLOBAL_ENTRY, global.listener);
  }

  /** Relay mode: each relay's process id and the connections it carries; empty otherwise. */
  relayLoads(): { pid: number; connections: number }[] {
    return this.relays?.loads() ?? [];
  }

  /** Where each region balancer and the global entry listen. */
  addresses(): NetworkAddresses {
    const host = this.spec.host;
    const regions: NetworkAddresses['regions'] = {};
    for (const [name, port] of this.ports) regions[name] = { host, port };
    return this.global ? { regions, global: { host, port: this.globalPort } } : { regions };
  }

  /**
   * Adds a node to a region (scale-up), or gives a node id already there its new
   * address (restart). It enters rotation after its first successful health
   * check, or now with `assumeHealthy`. Region faults apply to it at once.
   */
  addBackend(region: string, backend: BackendSpec, opts: AddBackendOptions = {}): void {
    const balancer = this.balancer(region);
    const known = this.nodes.get(backend.nodeId);
    if (known && known.region !== region) {
      throw new PushbenchError(
        'PB_BAD_SCENARIO',
        `node ${backend.nodeId} is already in region ${known.region}; node ids are unique across regions`,
      );
    }
    balancer.addBackend(
      backend,
      (nodeId) => this.partsOf(region, nodeId),
      opts.assumeHealthy ?? false,
    );
    this.refresh();
  }

  /** Takes a node out of rotation now; its connections keep flowing until they close. */
  removeBackend(region: string, nodeId: string): void {
    const balancer = this.balancer(region);
    if (!balancer.get(nodeId)) {
      throw new PushbenchError('PB_BAD_SCENARIO', `region ${region} has no node ${nodeId}`);
    }
    balancer.removeBackend(nodeId);
  }

  /** Puts a fault on the network and returns its id; a reset acts at once and its id clears nothing. */
  applyFault(fault: NetworkFault): string {
    if (this.relays) {
      // Relays carry bytes through no fault link; the kernel plays faults on that engine.
      throw new PushbenchError(
        'PB_USAGE',
        `${fault.kind}: a network in relay mode plays no faults (the kernel engine plays them on the nodes' hosts)`,
      );
    }
    if (fault.kind === 'bandwidth' || fault.kind === 'partition') {
      throw new PushbenchError(
        'PB_USAGE',
        `${fault.kind} is played by the kernel network engine only (topology.network "kernel")`,
      );
    }
    this.checkScope(fault.scope);
    const id = `f${this.nextFault++}`;
    if (fault.kind === 'reset') {
      for (const balancer of this.balancers.values()) {
        for (const backend of balancer.list()) {
          if (inScope(fault.scope, balancer.name, backend.nodeId)) balancer.reset(backend);
        }
      }
      return id;
    }
    const bucket =
      fault.kind === 'admission-rate'
        ? new TokenBucket(fault.ratePerSec, fault.burst, monoNowUs() / 1000)
        : null;
    this.faults.set(id, { fault, bucket });
    this.refresh();
    return id;
  }

  /** Removes one fault; an unknown or instantaneous id is a no-op. */
  clearFault(id: string): void {
    if (this.faults.delete(id)) this.refresh();
  }

  /** Heals a scope: removes every injected fault whose scope is exactly this one (standing ones stay). */
  clearScope(scope: FaultScope): void {
    this.checkScope(scope);
    for (const [id, record] of this.faults) {
      if (sameScope(record.fault.scope, scope) && !record.fault.standing) this.faults.delete(id);
    }
    this.refresh();
  }

  /** A cheap picture of connections, health and counters. */
  sample(): NetworkSample {
    const atMono = monoNowUs() / 1000;
    const sample: NetworkSample = { atMs: Date.now(), backends: [], regions: {} };
    for (const [name, balancer] of this.balancers) {
      let connections = 0;
      for (const backend of balancer.list()) {
        connections += backend.connections;
        sample.backends.push(balancer.sampleBackend(backend, atMono));
      }
      sample.regions[name] = {
        connections,
        noBackend: balancer.noBackend,
        admissionRejected: balancer.admissionRejected,
        resets: balancer.resets,
      };
    }
    if (this.global) {
      const routed: Record<string, Record<string, number>> = {};
      for (const [home, row] of Object.entries(this.global.routed)) routed[home] = { ...row };
      sample.global = { routed, healthy: this.global.healthy() };
    }
    return sample;
  }

  /** Closes every listener and connection; calling it again waits for the same close. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // The relays first: no device is accepted, or asked about, once the balancers close.
      this.relays?.stop();
      await this.global?.close();
      await Promise.all([...this.balancers.values()].map((b) => b.close()));
    })();
    return this.stopping;
  }

  private balancer(region: string): RegionBalancer {
    const balancer = this.balancers.get(region);
    if (!balancer) {
      throw new PushbenchError(
        'PB_BAD_SCENARIO',
        `unknown region ${JSON.stringify(region)}; regions are ${[...this.balancers.keys()].join(', ')}`,
      );
    }
    return balancer;
  }

  private checkScope(scope: FaultScope): void {
    if ('region' in scope) this.balancer(scope.region);
    else if (!this.nodes.has(scope.nodeId)) {
      throw new PushbenchError(
        'PB_BAD_SCENARIO',
        `fault scope names unknown node ${JSON.stringify(scope.nodeId)}; nodes are ${[...this.nodes.keys()].join(', ')}`,
      );
    }
  }

  private partsOf(region: string, nodeId: string): NodeParts {
    let parts = this.nodes.get(nodeId);
    if (!parts) {
      const faults: LinkFaults = { latency: null, blackholed: false };
      parts = {
        region,
        faults,
        admission: { conntrackTable: null, buckets: [] },
        link: new Link(faults, this.rng.fork(1000 + this.links++)),
      };
      this.nodes.set(nodeId, parts);
    }
    return parts;
  }

  /** Recomputes every node's faults from the table; relays see them on their next chunk. */
  private refresh(): void {
    const records = [...this.faults.values()];
    for (const [name, balancer] of this.balancers) {
      balancer.regionBuckets = records
        .filter((r) => r.bucket && 'region' in r.fault.scope && r.fault.scope.region === name)
        .map((r) => r.bucket!);
    }
    for (const [nodeId, parts] of this.nodes) {
      let latency: LinkFaults['latency'] = null;
      let blackholed = false;
      let table: number | null = null;
      const buckets: TokenBucket[] = [];
      for (const { fault, bucket } of records) {
        if (!inScope(fault.scope, parts.region, nodeId)) continue;
        switch (fault.kind) {
          case 'latency':
            if (!latency || fault.delayMs > latency.delayMs) {
              latency = { delayMs: fault.delayMs, jitterMs: fault.jitterMs };
            }
            break;
          case 'blackhole':
            blackholed = true;
            break;
          case 'conntrack-limit':
            table = table === null ? fault.table : Math.min(table, fault.table);
            break;
          case 'admission-rate':
            if (bucket && 'nodeId' in fault.scope) buckets.push(bucket);
            break;
          case 'reset':
            break;
        }
      }
      const changed = parts.faults.blackholed !== blackholed;
      parts.faults.latency = latency;
      parts.faults.blackholed = blackholed;
      parts.admission.conntrackTable = table;
      parts.admission.buckets = buckets;
      if (changed) parts.link.faultsChanged();
    }
  }
}
