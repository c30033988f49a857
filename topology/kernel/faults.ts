/**
 * Faults made by the kernel on a fabric host (fabric.ts): each one is an
 * nftables table of its own inside the host's namespace, with base chains on
 * the input and output hooks, so adding one is one `nft -f` and removing it is
 * one `delete table`, whatever else stands. A drop in any table drops the
 * packet. Resets are the kernel's too: `ss -K` aborts the sockets, and the
 * kernel sends each peer an RST.
 *
 * - `blackhole`: every packet in and out of the host's `eth0` is dropped.
 *   Sockets stay open; TCP retransmits; heartbeats or TCP's timeouts notice.
 * - `conntrack-limit`: once the host tracks `table` connections to the port,
 *   new SYNs are dropped; established flows keep flowing; the client kernel
 *   retries its SYN on its own schedule (`tcp_syn_retries`,
 *   `tcp_syn_linear_timeouts`).
 * - `admission-rate`: new connections to the port over `rate`/s (burst
 *   `burst`) are answered with an RST.
 * - `partition`: the host and the given peer addresses drop each other's packets.
 *
 * The addresses a blackhole spares and a partition cuts are a named nft set, so
 * a node that joins later is added to a standing fault in place
 * ({@link KernelFaultHandle.widen}).
 */
import { readFileSync } from 'node:fs';
import { execIn, nftIn } from './commands.js';
import type { KernelHost } from './fabric.js';

/** A fault the kernel plays on one host. */
export type KernelFault =
  /** `except`: addresses still reached (the harness's control plane: hub, HTTP API). */
  | { kind: 'blackhole'; except?: string[] }
  | { kind: 'conntrack-limit'; port: number; table: number }
  | { kind: 'admission-rate'; port: number; ratePerSec: number; burst: number }
  | { kind: 'partition'; peers: string[] };

/** A standing fault: remove it with {@link KernelFaultHandle.remove}. */
export interface KernelFaultHandle {
  host: KernelHost;
  table: string;
  /**
   * Adds addresses to what the fault names (a blackhole's spared addresses, a
   * partition's peers); none for the other kinds. Adding one already there is a no-op.
   */
  widen(addresses: string[]): Promise<void>;
  remove(): Promise<void>;
}

let nextFault = 0;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function port(p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65_535) throw new RangeError(`bad port ${p}`);
  return p;
}

function positive(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 1)
    throw new RangeError(`${what} must be a positive integer, got ${n}`);
  return n;
}

/** The named set of addresses a fault's rules match, when it has one. */
interface AddressSet {
  name: 'except' | 'peers';
  addresses: string[];
}

function addresses(what: string, list: string[]): string[] {
  for (const a of list) if (!IPV4.test(a)) throw new RangeError(`bad ${what} address ${a}`);
  return list;
}

/** The rules of `fault`, by hook, and the address set they match. */
function rulesOf(fault: KernelFault): { input: string[]; output: string[]; set?: AddressSet } {
  switch (fault.kind) {
    case 'blackhole':
      return {
        input: ['iifname "eth0" ip saddr != @except drop'],
        output: ['oifname "eth0" ip daddr != @except drop'],
        set: { name: 'except', addresses: addresses('spared', fault.except ?? []) },
      };
    case 'conntrack-limit':
      return {
        input: [
          `tcp dport ${port(fault.port)} ct state new ct count over ${positive('table', fault.table)} drop`,
        ],
        output: [],
      };
    case 'admission-rate':
      return {
        input: [
          `tcp dport ${port(fault.port)} ct state new limit rate over ${positive('rate', fault.ratePerSec)}/second burst ${positive('burst', fault.burst)} packets reject with tcp reset`,
        ],
        output: [],
      };
    case 'partition':
      if (fault.peers.length === 0) throw new RangeError('a partition needs at least one peer');
      return {
        input: ['ip saddr @peers drop'],
        output: ['ip daddr @peers drop'],
        set: { name: 'peers', addresses: addresses('peer', fault.peers) },
      };
  }
}

/** Puts `fault` on `host`; resolves once the kernel applies it. */
export async function addKernelFault(
  host: KernelHost,
  fault: KernelFault,
): Promise<KernelFaultHandle> {
  const { input, output, set } = rulesOf(fault);
  const table = `pushbench_f${++nextFault}`;
  const chain = (name: string, hook: string, rules: string[]) =>
    rules.length === 0
      ? ''
      : `  chain ${name} {\n    type filter hook ${hook} priority 0; policy accept;\n${rules.map((r) => `    ${r}\n`).join('')}  }\n`;
  const elements = (list: string[]) =>
    list.length > 0 ? ` elements = { ${list.join(', ')} };` : '';
  const declared = set ? `  set ${set.name} { type ipv4_addr;${elements(set.addresses)} }\n` : '';
  await nftIn(
    host.namespace,
    `table inet ${table} {\n${declared}${chain('in', 'input', input)}${chain('out', 'output', output)}}\n`,
  );
  let removed = false;
  return {
    host,
    table,
    async widen(list) {
      if (removed || !set || list.length === 0) return;
      await nftIn(
        host.namespace,
        `add element inet ${table} ${set.name} { ${addresses('added', list).join(', ')} }\n`,
      );
    },
    async remove() {
      if (removed) return;
      removed = true;
      await nftIn(host.namespace, `delete table inet ${table}\n`);
    },
  };
}

/**
 * Caps `host`'s link at `bitsPerSec` in both directions with the kernel's token
 * bucket filter (tc `tbf`): on its `eth0` for what it sends, and on its bridge
 * port in the fabric namespace for what it receives. Packets over the rate
 * queue (up to 100 ms), then drop, as on a saturated link.
 */
export async function capBandwidth(
  host: KernelHost,
  bitsPerSec: number,
): Promise<KernelFaultHandle> {
  if (!Number.isFinite(bitsPerSec) || bitsPerSec < 8000) {
    throw new RangeError(`bandwidth must be at least 8000 bit/s, got ${bitsPerSec}`);
  }
  const rate = Math.round(bitsPerSec);
  // 20 ms of traffic, and never less than ten full frames.
  const burst = Math.max(15_000, Math.round(rate / 8 / 50));
  const tbf = ['root', 'tbf', 'rate', `${rate}bit`, 'burst', String(burst), 'latency', '100ms'];
  await execIn(host.namespace, 'tc', ['qdisc', 'replace', 'dev', 'eth0', ...tbf]);
  await execIn(host.fabricNamespace, 'tc', ['qdisc', 'replace', 'dev', host.bridgePort, ...tbf]);
  let removed = false;
  return {
    host,
    table: `tbf ${rate}bit`,
    widen: async () => {},
    async remove() {
      if (removed) return;
      removed = true;
      await execIn(host.namespace, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root']).catch(() => {});
      await execIn(host.fabricNamespace, 'tc', [
        'qdisc',
        'del',
        'dev',
        host.bridgePort,
        'root',
      ]).catch(() => {});
    },
  };
}

/**
 * Resets every established TCP connection of `host` on local port `port` (`ss
 * -K`: the kernel aborts each socket and sends its peer an RST). Returns how
 * many there were.
 */
export async function resetConnections(host: KernelHost, localPort: number): Promise<number> {
  const filter = ['state', 'established', `( sport = :${port(localPort)} )`];
  const listed = await execIn(host.namespace, 'ss', ['-Htn', ...filter]);
  const count = listed.split('\n').filter((l) => l.trim() !== '').length;
  if (count > 0) await execIn(host.namespace, 'ss', ['-K', '-Htn', ...filter]);
  return count;
}

function sysctl(name: string): number | undefined {
  try {
    const v = Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim());
    return Number.isInteger(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * When this machine's kernel sends a SYN's retransmissions, in ms after the
 * first SYN. The initial RTO is 1 s. With `tcp_syn_linear_timeouts` L > 0 the
 * kernel keeps it at 1 s while it has retransmitted at most L times (so the
 * first L + 1 retransmissions are 1 s apart), then doubles it: with L = 4,
 * 1, 2, 3, 4, 5, 7, 11 … s (measured here by lifting a blackhole at 4.5 s and
 * 5.5 s: connected at 5.1 s and 7.1 s). Without the sysctl (L = 0), 1, 3, 7,
 * 15 … s. `tcp_syn_retries` retransmissions in all. A SYN dropped by a full
 * conntrack table is admitted at one of these, never between them.
 */
export function synRetransmitScheduleMs(): number[] {
  const retries = sysctl('tcp_syn_retries') ?? 6;
  const linear = sysctl('tcp_syn_linear_timeouts') ?? 0;
  const out: number[] = [];
  let at = 0;
  for (let i = 0; i < retries; i++) {
    const rto = linear > 0 && i <= linear ? 1000 : 1000 * 2 ** (linear > 0 ? i - linear : i);
    at += rto;
    out.push(at);
  }
  return out;
}
