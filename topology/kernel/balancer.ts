/**
 * The kernel balancer: a region's balancer host (a fabric host, fabric.ts)
 * whose kernel spreads new connections over the region's nodes with nftables
 * DNAT and `numgen`, as Kubernetes' kube-proxy does in its nftables mode. No
 * process carries a byte: the host forwards, conntrack keeps each connection
 * on the node it was given, and masquerading sends the answers back through the
 * balancer (the nodes see the balancer's address, as behind HAProxy).
 *
 * - `round-robin`: `numgen inc`, exactly in turn;
 * - `random`: `numgen random`.
 *
 * The kernel cannot count connections per backend, so least-connections and
 * power-of-two are refused with one line. Backends change (health, scale-up,
 * drain) by {@link KernelBalancer.setBackends}, one atomic `nft -f`: new
 * connections follow the new set; established ones stay where they are.
 */
import { PushbenchError } from '../../core/errors.js';
import { execIn, nftIn } from './commands.js';
import type { KernelFabric, KernelHost } from './fabric.js';

/** What the kernel balancer can do. */
export type KernelAlgorithm = 'round-robin' | 'random';

/** One backend: a node's address and port on the fabric. */
export interface KernelBackend {
  nodeId: string;
  address: string;
  port: number;
  /** Its process on this machine, for the health checker (starvation, health.ts). */
  pid?: number;
}

const TABLE = 'pushbench_lb';

/** Throws PB_USAGE for an algorithm the kernel cannot play. */
export function kernelAlgorithm(algorithm: string): KernelAlgorithm {
  if (algorithm === 'round-robin' || algorithm === 'random') return algorithm;
  throw new PushbenchError(
    'PB_USAGE',
    `balancer.engine "kernel" cannot do ${algorithm}: the kernel does not count connections per backend; use round-robin or random, or balancer.engine "haproxy" or "builtin"`,
  );
}

/** A region balancer in the kernel of its own host. */
export class KernelBalancer {
  private backends: KernelBackend[] = [];

  private constructor(
    readonly host: KernelHost,
    readonly port: number,
    readonly algorithm: KernelAlgorithm,
  ) {}

  /** Where devices connect: the balancer host's address and port. */
  get address(): string {
    return this.host.address;
  }

  /**
   * Adds the balancer host `lb-<name>` to `fabric`, turns on forwarding, and
   * spreads connections to `port` over `backends`.
   */
  static async start(
    fabric: KernelFabric,
    name: string,
    options: { algorithm: string; port: number; backends: KernelBackend[] },
  ): Promise<KernelBalancer> {
    const algorithm = kernelAlgorithm(options.algorithm);
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535) {
      throw new RangeError(`bad balancer port ${options.port}`);
    }
    const host = await fabric.addHost(`lb-${name}`);
    await execIn(host.namespace, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    // Answers leave by the interface they came in on: no redirect may tell clients
    // to skip the balancer.
    await execIn(host.namespace, 'sysctl', ['-q', '-w', 'net.ipv4.conf.all.send_redirects=0']);
    await execIn(host.namespace, 'sysctl', ['-q', '-w', 'net.ipv4.conf.eth0.send_redirects=0']);
    const balancer = new KernelBalancer(host, options.port, algorithm);
    await balancer.setBackends(options.backends);
    return balancer;
  }

  /** The backends new connections go to now. */
  current(): readonly KernelBackend[] {
    return this.backends;
  }

  /**
   * Replaces the backend set in one transaction. With none, new connections
   * are answered with an RST (a balancer with no healthy backend).
   */
  async setBackends(backends: KernelBackend[]): Promise<void> {
    for (const b of backends) {
      if (!/^\d+\.\d+\.\d+\.\d+$/.test(b.address))
        throw new RangeError(`bad backend address ${b.address}`);
      if (!Number.isInteger(b.port) || b.port < 1 || b.port > 65_535) {
        throw new RangeError(`bad backend port ${b.port}`);
      }
    }
    const gen = this.algorithm === 'round-robin' ? 'inc' : 'random';
    const map = backends.map((b, i) => `${i} : ${b.address} . ${b.port}`).join(', ');
    // With no backend nothing is translated: the connection reaches the balancer
    // host itself, whose input chain answers it with an RST.
    const spread =
      backends.length === 0
        ? ''
        : `    tcp dport ${this.port} dnat ip to numgen ${gen} mod ${backends.length} map { ${map} }\n`;
    // Recreated whole each time: one atomic transaction, whatever stood before.
    const ruleset =
      `table ip ${TABLE}\ndelete table ip ${TABLE}\n` +
      `table ip ${TABLE} {\n` +
      `  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n${spread}  }\n` +
      `  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n` +
      `    oifname "eth0" ct status dnat masquerade\n  }\n` +
      `  chain in {\n    type filter hook input priority 0; policy accept;\n` +
      (backends.length === 0 ? `    tcp dport ${this.port} reject with tcp reset\n` : '') +
      `  }\n}\n`;
    await nftIn(this.host.namespace, ruleset);
    this.backends = [...backends];
  }
}
