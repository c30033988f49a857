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
 * connections and resets new ones when full; there are enough relays for the
 * devices with room to spare.
 *
 * One relay accepts at a time: the one with the most room. Every process that
 * polls a listening socket wakes for each new connection, so with every relay
 * listening each connect woke them all: 10x balancer-scale-up's ramp at 1,000
 * connects/s cost the relays 0.75-0.84 of a core with 4 listening and 0.33-0.43
 * with 1 (bench/RESULTS.md, seventeenth session), and the nodes starved. This
 * process keeps a copy of each listening socket that no event loop polls (a
 * relay hands it back as a raw handle), gives it to the accepting relay, and
 * moves that role to the emptiest relay once the accepting one carries
 * {@link ACCEPT_SLACK} of a relay's capacity more, or dies. The old acceptor
 * closes its copy after the new one has it, so the queue never goes unserved.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Server } from 'node:net';
import { entryBeside } from '../../core/runtime.js';
import type { RelayAnswerItem, RelayAsk, RelayClosed, RelayHeld } from './relay-process.js';

/** Descriptors a relay keeps for itself (IPC, stdio, the heap's files). */
const RELAY_RESERVED_FILES = 200;
/** Most relays one network runs (spec.relays.count). */
export const MAX_RELAYS = 256;
/** Share of a relay's capacity the plan fills: room for the accepting relay to run ahead of the rest. */
const RELAY_FILL = 0.75;
/** The accepting relay hands the role on once it carries this share of a relay's capacity more than the emptiest. */
const ACCEPT_SLACK = 0.1;

/** Connections one relay carries under an open-file limit (two descriptors each). */
export function relayCapacity(openFiles: number | null): number {
  if (openFiles === null) return 1_000_000;
  return Math.max(1, Math.floor((openFiles - RELAY_RESERVED_FILES) / 2));
}

/** Relays `devices` connections need under an open-file limit, each filled to 75 % at most. */
export function relaysFor(devices: number, openFiles: number | null): number {
  return Math.max(1, Math.ceil(devices / (relayCapacity(openFiles) * RELAY_FILL)));
}

/** Of connections reported finished: how many left a connect-slot queue unseen by their node (gave up, or reset at its timeout). */
export interface QueueLeavers {
  abandoned: number;
  timedOut: number;
}

const NO_LEAVERS: QueueLeavers = { abandoned: 0, timedOut: 0 };

/** The decision for one device: its node, or a refusal (reset: RST; close: FIN). */
export type RelayDecision =
  | { nodeId: string; host: string; port: number; maxConnecting?: number; queueTimeoutMs?: number }
  | { refuse: 'reset' | 'close' };

/** The relay processes of one network. */
export class RelayPool {
  private readonly children: ChildProcess[] = [];
  /** Connections each relay carries, per node: what a relay that dies takes with it. */
  private readonly carried = new Map<ChildProcess, Map<string, number>>();
  /** Relays that exited: what they still send is ignored (their exit uncounted everything). */
  private readonly dead = new Set<ChildProcess>();
  private stopped = false;
  /** The relay that accepts now. */
  private acceptor: ChildProcess | undefined;
  /** Each entry's listening socket as a raw handle that no event loop here polls. */
  private readonly held = new Map<string, object>();
  /** Hand-backs awaited, per relay and entry. */
  private readonly handBacks = new Map<string, (handle: object) => void>();
  /** A move of the accepting role is under way. */
  private moving = false;

  private constructor(
    private readonly decide: (entry: string, address: string, tried: string[]) => RelayDecision,
    private readonly closed: (nodeId: string, n: number, queue: QueueLeavers) => void,
    /** Connections the accepting relay may carry beyond the emptiest before the role moves. */
    private readonly slack: number,
  ) {}

  /**
   * Forks `count` relays. `decide` picks the node for a device accepted on an
   * entry (and counts it), none of `tried` (a redispatch's nodes that refused
   * it); `closed` hears of finished connections per node, and how many of
   * them left while queued for a connect slot (`maxConnecting`) or were reset
   * past the queue timeout. `redispatches`:
   * other nodes a refused connect is tried on (0: the device is reset).
   */
  static async start(
    count: number,
    openFiles: number | null,
    sourceAddresses: string[],
    redispatches: number,
    decide: (entry: string, address: string, tried: string[]) => RelayDecision,
    closed: (nodeId: string, n: number, queue: QueueLeavers) => void,
  ): Promise<RelayPool> {
    const pool = new RelayPool(
      decide,
      closed,
      Math.max(1, Math.floor(relayCapacity(openFiles) * ACCEPT_SLACK)),
    );
    const entry = entryBeside(import.meta.url, './relay-process', { leanHeap: true });
    for (let i = 0; i < count; i++) {
      const child = fork(entry.path, [], {
        execArgv: entry.execArgv,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        env: {
          ...process.env,
          PUSHBENCH_RELAY_CAPACITY: String(relayCapacity(openFiles)),
          PUSHBENCH_RELAY_REDISPATCH: String(redispatches),
          // Each relay starts at its own place in the list.
          PUSHBENCH_RELAY_SOURCES: [
            ...sourceAddresses.slice(i % Math.max(1, sourceAddresses.length)),
            ...sourceAddresses.slice(0, i % Math.max(1, sourceAddresses.length)),
          ].join(','),
        },
      });
      pool.carried.set(child, new Map());
      child.on('message', (m: RelayAsk | RelayClosed | RelayHeld, handle: unknown) => {
        if (m?.op === 'held') {
          if (typeof handle === 'object' && handle !== null)
            pool.handBacks.get(`${i} ${m.entry}`)?.(handle);
          return;
        }
        pool.heard(child, m);
      });
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
          pool.closed(nodeId, count, NO_LEAVERS);
        }
        lost.clear();
        if (!pool.stopped) {
          process.stderr.write(
            `relay ${i} exited (${signal ?? code}); its ${n} connections are gone\n`,
          );
          // It may have been the one accepting: another takes over.
          pool.rebalance();
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
   * Takes over a listening socket: the accepting relay listens on it and hands
   * back a copy this process holds without polling; this process's own server
   * then closes.
   */
  async share(entry: string, server: Server): Promise<void> {
    const acceptor = this.acceptor ?? this.children.find((c) => !this.dead.has(c));
    if (!acceptor) throw new Error('no relay is running');
    this.acceptor = acceptor;
    const i = this.children.indexOf(acceptor);
    const back = new Promise<object>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`relay ${i} did not hand back ${entry} within 15 s`)),
        15_000,
      );
      this.handBacks.set(`${i} ${entry}`, (handle) => {
        clearTimeout(timer);
        this.handBacks.delete(`${i} ${entry}`);
        resolve(handle);
      });
    });
    const raw = (server as unknown as { _handle: object })._handle;
    await sendHandle(acceptor, { op: 'listen', entry, handBack: true }, raw);
    this.held.set(entry, await back);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Moves the accepting role to the emptiest live relay when the one
   * accepting is gone or carries {@link RelayPool.slack} more than it.
   */
  private rebalance(): void {
    // Not while a listening socket is being taken over: the move would miss it.
    if (this.moving || this.stopped || this.held.size === 0 || this.handBacks.size > 0) return;
    const live = this.children.filter((c) => !this.dead.has(c) && c.connected);
    if (live.length === 0) return;
    const loadOf = (c: ChildProcess) => {
      let n = 0;
      for (const v of this.carried.get(c)?.values() ?? []) n += v;
      return n;
    };
    const emptiest = live.reduce((a, b) => (loadOf(b) < loadOf(a) ? b : a));
    const current = this.acceptor && live.includes(this.acceptor) ? this.acceptor : undefined;
    if (current === emptiest) return;
    if (current && loadOf(current) - loadOf(emptiest) < this.slack) return;
    this.moving = true;
    this.acceptor = emptiest;
    const entries = [...this.held.keys()];
    const moves = entries.map((entry) =>
      sendHandle(emptiest, { op: 'listen', entry }, this.held.get(entry)!),
    );
    void Promise.all(moves)
      .then(() => {
        // The new acceptor has every socket: the old one lets go of its copies.
        if (current?.connected) current.send({ op: 'unlisten', entries }, undefined, {}, () => {});
      })
      .catch(() => {
        // The new acceptor died meanwhile; its exit moves the role again.
      })
      .finally(() => {
        this.moving = false;
        // The new acceptor died during the move (its exit's rebalance found one under way).
        if (this.acceptor && this.dead.has(this.acceptor)) this.rebalance();
      });
  }

  private heard(child: ChildProcess, m: RelayAsk | RelayClosed): void {
    if (this.dead.has(child)) return;
    const carried = this.carried.get(child)!;
    if (m?.op === 'closed' && typeof m.counts === 'object') {
      for (const [nodeId, n] of Object.entries(m.counts)) {
        carried.set(nodeId, (carried.get(nodeId) ?? 0) - n);
        this.closed(nodeId, n, {
          abandoned: Number(m.abandoned?.[nodeId]) || 0,
          timedOut: Number(m.timedOut?.[nodeId]) || 0,
        });
      }
      return;
    }
    if (m?.op !== 'ask' || !Array.isArray(m.asks)) return;
    const answers: RelayAnswerItem[] = [];
    for (const [id, entry, address, tried] of m.asks) {
      const d = this.decide(
        String(entry),
        String(address),
        Array.isArray(tried) ? tried.map(String) : [],
      );
      answers.push(
        'refuse' in d
          ? [id, d.refuse]
          : d.maxConnecting === undefined
            ? [id, d.nodeId, d.host, d.port]
            : [id, d.nodeId, d.host, d.port, d.maxConnecting, d.queueTimeoutMs],
      );
    }
    if (child.connected) {
      for (const a of answers) if (a.length >= 4) carried.set(a[1], (carried.get(a[1]) ?? 0) + 1);
      // Should it die before reading them, its exit uncounts these with the rest.
      child.send({ op: 'answer', answers }, undefined, {}, () => {});
      if (child === this.acceptor) this.rebalance();
      return;
    }
    // A relay gone before the answer took its sockets with it.
    for (const a of answers) if (a.length >= 4) this.closed(a[1], 1, NO_LEAVERS);
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

/** Sends a raw listening handle to a relay, keeping this process's copy open. */
function sendHandle(child: ChildProcess, message: object, raw: object): Promise<void> {
  return new Promise((resolve, reject) =>
    child.send(message, raw as Server, { keepOpen: true }, (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}
