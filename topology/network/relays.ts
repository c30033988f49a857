/**
 * Relay mode of the network (the kernel engine's builtin balancer): the
 * network process is only the decision point; it holds no socket of a device.
 * Relay processes (relay-process.ts) share the balancers' and the global
 * entry's listening sockets, accept the devices themselves, and ask the
 * network, by a small IPC message, which node each goes to. The network
 * answers exactly as its balancers always pick (round-robin order, slow start,
 * health, least-connections and power-of-two on live counts), counts the
 * connection on its node at once, and uncounts it when the relay reports it
 * finished (coalesced per event-loop turn of the relay). So the counts are
 * exact but for closes in flight, about one IPC hop.
 *
 * Node's IPC sends one socket handle per acknowledgement, which on a busy box
 * caps a per-connection hand-off at a few hundred connects/s; the listening
 * sockets are sent once instead, and asks and answers are plain messages that
 * need no acknowledgement. Each relay holds up to (RLIMIT_NOFILE − 200) / 2
 * connections and stops accepting when full; there are enough relays for the
 * devices with room to spare, as the kernel does not spread accepts evenly.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Server } from 'node:net';
import { entryBeside } from '../../core/runtime.js';
import type { RelayAnswerItem, RelayAsk, RelayClosed } from './relay-process.js';

/** Descriptors a relay keeps for itself (IPC, stdio, the heap's files). */
const RELAY_RESERVED_FILES = 200;
/** Most relays one network runs (spec.relays.count). */
export const MAX_RELAYS = 256;
/** Share of a relay's capacity the plan fills: accepts do not spread evenly over relays. */
const RELAY_FILL = 0.75;

/** Connections one relay carries under an open-file limit (two descriptors each). */
export function relayCapacity(openFiles: number | null): number {
  if (openFiles === null) return 1_000_000;
  return Math.max(1, Math.floor((openFiles - RELAY_RESERVED_FILES) / 2));
}

/** Relays `devices` connections need under an open-file limit, each filled to 75 % at most. */
export function relaysFor(devices: number, openFiles: number | null): number {
  return Math.max(1, Math.ceil(devices / (relayCapacity(openFiles) * RELAY_FILL)));
}

/** The decision for one device: its node, or a refusal (reset: RST; close: FIN). */
export type RelayDecision =
  | { nodeId: string; host: string; port: number }
  | { refuse: 'reset' | 'close' };

/** The relay processes of one network. */
export class RelayPool {
  private readonly children: ChildProcess[] = [];
  /** Connections each relay carries, per node: what a relay that dies takes with it. */
  private readonly carried = new Map<ChildProcess, Map<string, number>>();
  /** Relays that exited: what they still send is ignored (their exit uncounted everything). */
  private readonly dead = new Set<ChildProcess>();
  private stopped = false;

  private constructor(
    private readonly decide: (entry: string, address: string) => RelayDecision,
    private readonly closed: (nodeId: string, n: number) => void,
  ) {}

  /**
   * Forks `count` relays. `decide` picks the node for a device accepted on an
   * entry (and counts it); `closed` hears of finished connections per node.
   */
  static async start(
    count: number,
    openFiles: number | null,
    sourceAddresses: string[],
    decide: (entry: string, address: string) => RelayDecision,
    closed: (nodeId: string, n: number) => void,
  ): Promise<RelayPool> {
    const pool = new RelayPool(decide, closed);
    const entry = entryBeside(import.meta.url, './relay-process', { leanHeap: true });
    for (let i = 0; i < count; i++) {
      const child = fork(entry.path, [], {
        execArgv: entry.execArgv,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        env: {
          ...process.env,
          PUSHBENCH_RELAY_CAPACITY: String(relayCapacity(openFiles)),
          // Each relay starts at its own place in the list.
          PUSHBENCH_RELAY_SOURCES: [
            ...sourceAddresses.slice(i % Math.max(1, sourceAddresses.length)),
            ...sourceAddresses.slice(0, i % Math.max(1, sourceAddresses.length)),
          ].join(','),
        },
      });
      pool.carried.set(child, new Map());
      child.on('message', (m: RelayAsk | RelayClosed) => pool.heard(child, m));
      // A write to a relay that just died fails (EPIPE); its exit says the rest.
      child.on('error', () => {});
      child.on('exit', (code, signal) => {
        // Its devices' connections died with it: uncount them, so the balancers'
        // counts stay those of live connections. The other relays go on accepting.
        // Messages it sent before dying may still arrive: they are ignored.
        pool.dead.add(child);
        const lost = pool.carried.get(child) ?? new Map<string, number>();
        let n = 0;
        for (const [nodeId, count] of lost) {
          n += count;
          pool.closed(nodeId, count);
        }
        lost.clear();
        if (!pool.stopped) {
          process.stderr.write(
            `relay ${i} exited (${signal ?? code}); its ${n} connections are gone\n`,
          );
        }
      });
      pool.children.push(child);
    }
    try {
      await Promise.all(
        pool.children.map(
          (child, i) =>
            new Promise<void>((resolve, reject) => {
              const timer = setTimeout(
                () => reject(new Error(`relay ${i} did not start within 15 s`)),
                15_000,
              );
              child.on('message', (m: { op?: string }) => {
                if (m?.op !== 'ready') return;
                clearTimeout(timer);
                resolve();
              });
              child.once('exit', (code, signal) => {
                clearTimeout(timer);
                reject(new Error(`relay ${i} exited (${signal ?? code}) before it was ready`));
              });
            }),
        ),
      );
    } catch (err) {
      pool.stop();
      throw err;
    }
    return pool;
  }

  /**
   * Gives every relay a copy of a listening socket, then closes this process's
   * own: from then on only relays accept on it.
   */
  async share(entry: string, server: Server): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve, reject) =>
            child.send({ op: 'listen', entry }, server, { keepOpen: true }, (err) =>
              err ? reject(err) : resolve(),
            ),
          ),
      ),
    );
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private heard(child: ChildProcess, m: RelayAsk | RelayClosed): void {
    if (this.dead.has(child)) return;
    const carried = this.carried.get(child)!;
    if (m?.op === 'closed' && typeof m.counts === 'object') {
      for (const [nodeId, n] of Object.entries(m.counts)) {
        carried.set(nodeId, (carried.get(nodeId) ?? 0) - n);
        this.closed(nodeId, n);
      }
      return;
    }
    if (m?.op !== 'ask' || !Array.isArray(m.asks)) return;
    const answers: RelayAnswerItem[] = [];
    for (const [id, entry, address] of m.asks) {
      const d = this.decide(String(entry), String(address));
      answers.push('refuse' in d ? [id, d.refuse] : [id, d.nodeId, d.host, d.port]);
    }
    if (child.connected) {
      for (const a of answers) if (a.length === 4) carried.set(a[1], (carried.get(a[1]) ?? 0) + 1);
      // Should it die before reading them, its exit uncounts these with the rest.
      child.send({ op: 'answer', answers }, undefined, {}, () => {});
      return;
    }
    // A relay gone before the answer took its sockets with it.
    for (const a of answers) if (a.length === 4) this.closed(a[1], 1);
  }

  /** Each relay's process id and the connections it carries now. */
  loads(): { pid: number; connections: number }[] {
    return this.children.map((c) => {
      let connections = 0;
      for (const n of this.carried.get(c)?.values() ?? []) connections += n;
      return { pid: c.pid ?? 0, connections };
    });
  }

  /** Stops every relay (their connections close with them). */
  stop(): void {
    this.stopped = true;
    for (const child of this.children) {
      if (child.connected) child.disconnect();
      child.kill('SIGTERM');
    }
  }
}
