/**
 * Hosts made by the Linux kernel: each host is a network namespace with its
 * own address, its `eth0` a veth whose other end is plugged into one bridge,
 * which lives in the run's own fabric namespace. The coordinator's namespace
 * joins the bridge too (a veth with the subnet's `.0.1`), so the harness
 * reaches every host; hosts reach each other across the bridge, through real
 * TCP stacks, where the kernel's own firewall (nft, see faults.ts) can drop,
 * limit and reset their traffic.
 *
 * Everything a fabric makes carries its tag, `pb<pid>` (the creating process's
 * pid): namespaces `pb<pid>-<host>`, links `pb<pid>…`. `destroy()` removes it;
 * an exit handler removes it when the process exits without that; and
 * {@link sweepDeadFabrics}, run at every start, removes what a SIGKILLed run
 * left (a tag whose pid is gone, or is no longer a pushbench process).
 * Removing a fabric kills every process still inside its namespaces (nodes,
 * agents, HAProxy), then deletes the namespaces: that deletes each veth end,
 * which deletes the pair, and every nft table inside.
 *
 * Subnets: each fabric claims a free `10.N.0.0/16` (N in 100-254) by creating
 * `/run/pushbench/subnet-N` (mkdir is atomic), so concurrent runs never share
 * one; the claim goes with the fabric.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PushbenchError } from '../../core/errors.js';
import { execIn, ip, ipSync } from './commands.js';

/** One host of a fabric: its namespace and address. */
export interface KernelHost {
  /** The name it was added under. */
  name: string;
  /** Its network namespace (`ip netns exec <namespace> …` runs a process on it). */
  namespace: string;
  /** Its IPv4 address on the bridge. */
  address: string;
  /** Its index on the fabric (address order). */
  index: number;
  /** The fabric's namespace, and the bridge port that leads to this host there (its link's other end). */
  fabricNamespace: string;
  bridgePort: string;
}

/** Where fabrics record their subnet claims. */
export const STATE_DIR = '/run/pushbench';
const FIRST_SUBNET = 100;
const LAST_SUBNET = 254;
const BRIDGE = 'br0';

/** A host name usable in a namespace name: letters, digits, `-`, 1-32 characters. */
const HOST_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** The tag of fabrics made by process `pid`. */
export function fabricTag(pid: number = process.pid): string {
  return `pb${pid}`;
}

/**
 * A bridge and its hosts, owned by this process. Made by {@link create};
 * every method that changes the kernel is asynchronous and rejects with the
 * failing command in one line.
 */
export class KernelFabric {
  /** A fabric of this process exists (see {@link create}). */
  private static live = false;
  private readonly hosts: KernelHost[] = [];
  private destroyed = false;
  private readonly onExit = () => this.destroySync();

  private constructor(
    /** `pb<pid>`: the prefix of everything this fabric made. */
    readonly tag: string,
    /** Second octet of this fabric's `10.N.0.0/16`. */
    readonly subnet: number,
  ) {}

  /** The fabric's namespace, which holds the bridge. */
  get fabricNamespace(): string {
    return `${this.tag}-fabric`;
  }

  /** The coordinator's (this process's namespace's) address on the bridge. */
  get rootAddress(): string {
    return `10.${this.subnet}.0.1`;
  }

  /** Hosts added so far, in order. */
  list(): readonly KernelHost[] {
    return this.hosts;
  }

  /**
   * Makes the fabric: sweeps what dead runs left, claims a subnet, creates the
   * fabric namespace with its bridge, and joins this namespace to it.
   */
  static async create(): Promise<KernelFabric> {
    // Names carry the pid, and interface names have 15 characters: one fabric per process.
    if (KernelFabric.live) {
      throw new PushbenchError(
        'PB_USAGE',
        `this process already has a kernel fabric (${fabricTag()}); one run at a time per process on the kernel engine`,
      );
    }
    KernelFabric.live = true;
    try {
      await sweepDeadFabrics();
    } catch (err) {
      KernelFabric.live = false;
      throw err;
    }
    const tag = fabricTag();
    const subnet = claimSubnet(tag);
    const fabric = new KernelFabric(tag, subnet);
    process.once('exit', fabric.onExit);
    try {
      const ns = fabric.fabricNamespace;
      await ip(['netns', 'add', ns]);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', ns, 'link', 'add', BRIDGE, 'type', 'bridge']);
      await ip(['-n', ns, 'link', 'set', BRIDGE, 'up']);
      // Frames crossing the bridge need no netfilter of the bridge's own (faults are
      // rules on the hosts); br_netfilter, where the kernel has it, would pass each one
      // through this namespace's IP hooks. Best effort: a kernel without it has no knob.
      await execIn(ns, 'sysctl', [
        '-q',
        '-w',
        'net.bridge.bridge-nf-call-iptables=0',
        'net.bridge.bridge-nf-call-ip6tables=0',
        'net.bridge.bridge-nf-call-arptables=0',
      ]).catch(() => {});
      // This namespace's door to the bridge.
      const root = `${tag}r`;
      await ip(['link', 'add', root, 'type', 'veth', 'peer', 'name', `${tag}rp`]);
      await fabric.plug(`${tag}rp`);
      await ip(['addr', 'add', `${fabric.rootAddress}/16`, 'dev', root]);
      await ip(['link', 'set', root, 'up']);
    } catch (err) {
      await fabric.destroy();
      throw err;
    }
    return fabric;
  }

  /**
   * Adds `count` (1-254) more addresses `10.N.<block>.k` to a host's `eth0`
   * (block 100-199, default 199): source addresses for the connections it opens,
   * so its ephemeral ports never run out. Returns them.
   */
  async addHostAddresses(host: KernelHost, count: number, block = 199): Promise<string[]> {
    if (!Number.isInteger(count) || count < 1 || count > 254) {
      throw new RangeError(`1-254 source addresses, got ${count}`);
    }
    if (!Number.isInteger(block) || block < 100 || block > 199) {
      throw new RangeError(`host source address blocks are 10.N.100-199.x, got ${block}`);
    }
    const out: string[] = [];
    for (let k = 1; k <= count; k++) {
      const address = `10.${this.subnet}.${block}.${k}`;
      await ip(['-n', host.namespace, 'addr', 'add', `${address}/16`, 'dev', 'eth0']);
      out.push(address);
    }
    return out;
  }

  /** Adds a host: a namespace with `lo` and `eth0` up, `eth0` on the bridge. */
  async addHost(name: string): Promise<KernelHost> {
    if (!HOST_NAME.test(name)) {
      throw new TypeError(`host name must be 1-32 of a-z 0-9 - (got ${JSON.stringify(name)})`);
    }
    if (this.hosts.some((h) => h.name === name)) throw new TypeError(`host ${name} exists`);
    const index = this.hosts.length + 2;
    if (index > 65_000) throw new RangeError('a fabric holds at most 64,998 hosts');
    const bridgeEnd = `${this.tag}p${index}`;
    const host: KernelHost = {
      name,
      namespace: `${this.tag}-${name}`,
      address: `10.${this.subnet}.${index >> 8}.${index & 255}`,
      index,
      fabricNamespace: this.fabricNamespace,
      bridgePort: bridgeEnd,
    };
    const hostEnd = `${this.tag}h${index}`;
    // Claimed before the first await: hosts added concurrently get distinct indexes.
    this.hosts.push(host);
    await ip(['netns', 'add', host.namespace]);
    await ip(['-n', host.namespace, 'link', 'set', 'lo', 'up']);
    await ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', bridgeEnd]);
    await ip(['link', 'set', hostEnd, 'netns', host.namespace]);
    await ip(['-n', host.namespace, 'link', 'set', hostEnd, 'name', 'eth0']);
    await ip(['-n', host.namespace, 'addr', 'add', `${host.address}/16`, 'dev', 'eth0']);
    await ip(['-n', host.namespace, 'link', 'set', 'eth0', 'up']);
    await this.plug(bridgeEnd);
    return host;
  }

  /** The host named `name`; throws when there is none. */
  host(name: string): KernelHost {
    const host = this.hosts.find((h) => h.name === name);
    if (host === undefined) throw new TypeError(`no host ${name} on fabric ${this.tag}`);
    return host;
  }

  /** `ip netns exec` argv that runs `command` on `host`: a real process in its namespace. */
  commandOn(host: KernelHost, command: string, args: string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', host.namespace, command, ...args]];
  }

  /** Removes every namespace and link of this fabric, and its subnet claim. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    await removeFabric(this.tag);
    KernelFabric.live = false;
  }

  /** {@link destroy} for exit handlers: synchronous. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    removeFabricSync(this.tag);
  }

  /** Moves a veth end into the fabric namespace and onto the bridge. */
  private async plug(end: string): Promise<void> {
    const ns = this.fabricNamespace;
    await ip(['link', 'set', end, 'netns', ns]);
    await ip(['-n', ns, 'link', 'set', end, 'master', BRIDGE]);
    await ip(['-n', ns, 'link', 'set', end, 'up']);
  }
}

/** Claims a free `10.N.0.0/16` for `tag`; throws when all are taken. */
function claimSubnet(tag: string): number {
  mkdirSync(STATE_DIR, { recursive: true });
  for (let n = FIRST_SUBNET; n <= LAST_SUBNET; n++) {
    const dir = join(STATE_DIR, `subnet-${n}`);
    try {
      mkdirSync(dir);
    } catch {
      continue;
    }
    writeFileSync(join(dir, 'owner'), tag);
    return n;
  }
  throw new Error(
    `no free subnet: ${LAST_SUBNET - FIRST_SUBNET + 1} fabrics exist (see ${STATE_DIR})`,
  );
}

/** The subnet claims of `tag`. */
function claimsOf(tag: string): string[] {
  let names: string[];
  try {
    names = readdirSync(STATE_DIR);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith('subnet-'))
    .map((n) => join(STATE_DIR, n))
    .filter((dir) => {
      try {
        return readFileSync(join(dir, 'owner'), 'utf8').trim() === tag;
      } catch {
        return false;
      }
    });
}

/** Namespaces whose name starts with `prefix`. */
async function namespacesWith(prefix: string): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Kills every process still in `namespace` (a dead run's nodes, agents, HAProxy). */
function killProcessesIn(pids: string): void {
  for (const pid of pids.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

async function removeFabric(tag: string): Promise<void> {
  for (const ns of await namespacesWith(`${tag}-`)) {
    killProcessesIn(await ip(['netns', 'pids', ns]).catch(() => ''));
    await ip(['netns', 'del', ns]).catch(() => {});
  }
  // The root end goes with its peer in the fabric namespace; this is for a half-made fabric.
  await ip(['link', 'del', `${tag}r`]).catch(() => {});
  for (const dir of claimsOf(tag)) rmSync(dir, { recursive: true, force: true });
  removeTempDirs(tag);
}

/** The run's HAProxy folders (haproxy.ts names them by the tag). */
function removeTempDirs(tag: string): void {
  try {
    for (const name of readdirSync(tmpdir())) {
      if (name.startsWith(`pushbench-haproxy-${tag}-`)) {
        rmSync(join(tmpdir(), name), { recursive: true, force: true });
      }
    }
  } catch {
    // Nothing to remove.
  }
}

function removeFabricSync(tag: string): void {
  let list = '';
  try {
    list = readdirSync('/run/netns').join('\n');
  } catch {
    list = '';
  }
  for (const ns of list.split('\n').filter((n) => n.startsWith(`${tag}-`))) {
    try {
      killProcessesIn(
        execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 }),
      );
    } catch {
      // Nothing runs there, or ip failed: deleting the namespace still goes ahead.
    }
    ipSync(['netns', 'del', ns]);
  }
  ipSync(['link', 'del', `${tag}r`]);
  for (const dir of claimsOf(tag)) rmSync(dir, { recursive: true, force: true });
  removeTempDirs(tag);
}

/** True while `pid` is a live pushbench process (a reused pid of something else is not). */
function liveOwner(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node|pushbench|vitest/.test(cmdline);
  } catch {
    return false;
  }
}

/**
 * {@link sweepDeadFabrics} where this process may (root, `ip` present), run at
 * the start of every run whatever its engine; [] elsewhere or on any failure.
 */
export async function sweepIfPossible(): Promise<string[]> {
  if (process.getuid?.() !== 0) return [];
  try {
    return await sweepDeadFabrics();
  } catch {
    return [];
  }
}

/**
 * Removes every fabric whose owner is gone (a SIGKILLed run's namespaces,
 * links and subnet claims). Returns the tags removed.
 */
export async function sweepDeadFabrics(): Promise<string[]> {
  const tags = new Set<string>();
  for (const ns of await namespacesWith('pb')) {
    const m = /^pb(\d+)-/.exec(ns);
    if (m) tags.add(`pb${m[1]}`);
  }
  try {
    for (const n of readdirSync(STATE_DIR).filter((d) => d.startsWith('subnet-'))) {
      const owner = readFileSync(join(STATE_DIR, n, 'owner'), 'utf8').trim();
      if (/^pb\d+$/.test(owner)) tags.add(owner);
    }
  } catch {
    // No state yet.
  }
  const removed: string[] = [];
  for (const tag of tags) {
    if (liveOwner(Number(tag.slice(2)))) continue;
    await removeFabric(tag);
    removed.push(tag);
  }
  return removed;
}
