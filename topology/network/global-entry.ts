import { createServer, type Server, type Socket } from 'node:net';
import { PushbenchError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { RegionBalancer } from './balancer.js';
import { HealthState, probeHealthz } from './health.js';
import { Link } from './link.js';
import type { ExternalRegionSpec, NetworkSpec } from './types.js';

/** Settings of the global entry: the spec's `global` block and listen host. */
export type GlobalEntrySpec = NonNullable<NetworkSpec['global']> & { host: string };

/**
 * A region whose balancer is not in this network (relay mode: the kernel
 * engine's HAProxy or DNAT): devices routed to it are carried to its
 * balancer's address, and it is checked through that balancer.
 */
export class ExternalRegion {
  /** A faultless link: checks go straight to the balancer. */
  readonly link = new Link({ latency: null, blackholed: false }, new Rng(1));

  constructor(readonly spec: ExternalRegionSpec) {}

  get name(): string {
    return this.spec.name;
  }

  /** Its balancer, as the target of a check (over TLS where the balancer ends it). */
  probeTarget(): { host: string; port: number; link: Link; tls?: boolean } {
    return {
      host: this.spec.host,
      port: this.spec.port,
      link: this.link,
      ...(this.spec.tls && { tls: true }),
    };
  }
}

/** A region the global entry routes to: a balancer of this network, or one outside it. */
export type RoutedRegion = RegionBalancer | ExternalRegion;

/**
 * The global entry in front of the regions: routes each device by its source
 * address to its home region (`latency` mode: always; `health` mode: while the
 * entry's own checks find it healthy, else the next healthy region in failover
 * order), handing the socket straight to that region's balancer (relay mode:
 * telling the relay where to carry it, which may be a balancer outside this
 * network).
 */
export class GlobalEntry {
  /** home region -> region used -> connections. */
  readonly routed: Record<string, Record<string, number>> = {};
  private readonly health = new Map<string, HealthState>();
  private readonly server: Server;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly spec: GlobalEntrySpec,
    /** Regions in failover order. */
    private readonly regions: RoutedRegion[],
  ) {
    for (const region of regions) this.health.set(region.name, new HealthState(true, false));
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.route(socket));
  }

  /** Listens on an ephemeral port and resolves with it; starts the region checks in `health` mode. */
  listen(): Promise<number> {
    if (this.spec.mode === 'health') {
      this.timer = setInterval(() => void this.checkAll(), this.spec.health.intervalMs);
    }
    return new Promise((resolve, reject) => {
      this.server.once('error', (err) =>
        reject(new PushbenchError('PB_INTERNAL', `global entry cannot listen: ${err.message}`)),
      );
      this.server.listen({ port: 0, host: this.spec.host, backlog: 65_535 }, () => {
        const address = this.server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  }

  /** The entry's view of each region's health. */
  healthy(): Record<string, boolean> {
    const out: Record<string, boolean> = {};
    for (const [name, state] of this.health) out[name] = state.healthy;
    return out;
  }

  /** Checks each region through one of its in-rotation backends (and that backend's link). */
  async checkAll(): Promise<void> {
    const spec = this.spec.health;
    await Promise.all(
      this.regions.map(async (region) => {
        const state = this.health.get(region.name)!;
        if (state.checking) return;
        state.checking = true;
        const target = region.probeTarget();
        const check = target
          ? await probeHealthz(target.host, target.port, target.link, spec.timeoutMs, {
              tls: 'tls' in target && target.tls === true,
            })
          : 'down';
        state.checking = false;
        if (!this.closed) state.record(check, spec);
      }),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Its listening socket, for relay mode to share with the relays. */
  get listener(): Server {
    return this.server;
  }

  private route(socket: Socket): void {
    const target = this.chooseRegion((socket.remoteAddress ?? '').replace(/^::ffff:/, ''));
    // An external region exists in relay mode only, where relays accept, not this server.
    if (target instanceof ExternalRegion) socket.destroy();
    else target.handleConnection(socket);
  }

  /** The region a device from `address` goes to now, counted in {@link routed}. */
  chooseRegion(address: string): RoutedRegion {
    const first = this.regions[0]!;
    const homeName = this.spec.homeByAddress[address] ?? first.name;
    const homeIndex = Math.max(
      0,
      this.regions.findIndex((r) => r.name === homeName),
    );
    let target = this.regions[homeIndex]!;
    if (this.spec.mode === 'health') {
      for (let k = 0; k < this.regions.length; k++) {
        const candidate = this.regions[(homeIndex + k) % this.regions.length]!;
        if (this.health.get(candidate.name)?.healthy) {
          target = candidate;
          break;
        }
      }
    }
    const row = this.routed[homeName] ?? {};
    this.routed[homeName] = row;
    row[target.name] = (row[target.name] ?? 0) + 1;
    return target;
  }
}
