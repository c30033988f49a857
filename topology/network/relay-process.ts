/**
 * One relay of a network in relay mode (relays.ts): a child of the network
 * process that accepts devices itself, on listening sockets it shares with the
 * other relays, asks the network which node each goes to, connects to that
 * node and relays both ways through a faultless {@link Link} (half-open FINs
 * travel on their own; a reset tears the other side down). It reports each
 * finished connection back, so the balancer's per-node counts stay exact
 * within one IPC hop. At its connection capacity it resets each new device
 * it accepts (a device's reconnect then most likely lands on another relay);
 * it never stops accepting. It reads each device from its accept (64 KiB at
 * most before its node is known), so one that gave up (its FIN, read after
 * its request) before its node is known is dropped, never carried to a node
 * (HAProxy's `abortonclose`). With redispatch, it connects to the node before
 * relaying a byte, and asks again, naming the nodes that refused, when the
 * connect fails. With `maxConnecting` (in the answer), a node has at most that
 * many of this relay's connects unanswered (no byte back yet); the devices past
 * them wait here in arrival order, and one that leaves while it waits is
 * reported `abandoned`; one that waits past the answer's `queueTimeoutMs` is
 * reset and reported `timedOut`. Exits when its parent's channel closes.
 *
 * Messages: it says `{op: "ready"}`; takes `{op: "listen", entry, handBack?}`
 * with a raw listening handle and accepts on it (with `handBack`, it sends the
 * handle back as `{op: "held", entry}` for its parent to keep unpolled);
 * takes `{op: "unlisten", entries}` and closes its listening sockets of those
 * entries (another relay accepts on them now; its connections go on); asks `{op: "ask", asks: [[id, entry, address, tried?], …]}`
 * (`tried`: a redispatch's nodes that refused it; each such node's
 * connection is reported closed first);
 * takes `{op: "answer", answers: [[id, nodeId, host, port] | [id, "reset" |
 * "close"], …]}`; sends `{op: "closed", counts: {nodeId: n}}`. Asks and
 * closes are coalesced per event-loop turn (a burst of accepts is one message).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Rng } from '../../core/rng.js';
import { Link, readWhileWaiting, resetSocket } from './link.js';

/**
 * One answer: the node to carry device `id` to (with its balancer's
 * `maxConnecting`, when it has one), or a refusal (reset: RST; close: FIN).
 */
export type RelayAnswerItem =
  | [
      id: number,
      nodeId: string,
      host: string,
      port: number,
      maxConnecting?: number,
      queueTimeoutMs?: number,
    ]
  | [id: number, refuse: 'reset' | 'close'];

/** What the network answers a batch of asks with. */
export interface RelayAnswer {
  op: 'answer';
  answers: RelayAnswerItem[];
}

/** What a relay asks, for each device it accepted on `entry` from `address`. */
export interface RelayAsk {
  op: 'ask';
  asks: [id: number, entry: string, address: string, tried?: string[]][];
}

/** A listening socket handed back to the parent (with the handle). */
export interface RelayHeld {
  op: 'held';
  entry: string;
}

/**
 * What a relay reports: connections finished since its last report, per node;
 * `abandoned`: of those, devices that left while they waited for a connect
 * slot of their node (`maxConnecting`), which the node never saw; `timedOut`:
 * devices reset after waiting `queueTimeoutMs` for one.
 */
export interface RelayClosed {
  op: 'closed';
  counts: Record<string, number>;
  abandoned?: Record<string, number>;
  timedOut?: Record<string, number>;
}

/** Connections this relay carries before it resets new ones (from its parent). */
const capacity = Number(process.env.PUSHBENCH_RELAY_CAPACITY ?? '1000000');
/** Addresses to open node connections from, in turn (none: the host's own). */
const sources = (process.env.PUSHBENCH_RELAY_SOURCES ?? '').split(',').filter((a) => a !== '');
let nextSource = 0;
/** The shared sockets' accept queue: a herd's SYNs wait there, not in retransmits. */
const BACKLOG = 65_535;
/** Bytes a device may send before its node is known (its upgrade request); past them it is paused. */
const EARLY_BYTES = 64 * 1024;
/** Other nodes a refused connect is tried on (0: none, the device is reset). */
const redispatches = Number(process.env.PUSHBENCH_RELAY_REDISPATCH ?? '0');

/** A device whose node is known, waiting for one of the node's connect slots (`maxConnecting`). */
interface Queued {
  w: Waiting;
  /** When it was queued (ms, monotonic), for the queue timeout. */
  atMs: number;
  host: string;
  port: number;
  /** Its socket's close while queued: it is taken out and uncounted. */
  left: () => void;
}

/** Per node: connects handed to it that it has not answered yet, and the devices queued behind them (in arrival order). */
interface Slots {
  connecting: number;
  queue: Set<Queued>;
  /** How long a device may wait in `queue` before it is reset (ms). */
  timeoutMs: number;
}

/** A device accepted and waiting for its node. */
interface Waiting {
  socket: Socket;
  entry: string;
  address: string;
  /** Nodes that refused it (redispatch). */
  tried: string[];
  /** What it sent before its node was known (its upgrade request), relayed first. */
  early: Buffer[];
  /** Stops reading those bytes (read so that a device that gives up, its FIN, is seen at once). */
  stopReading: () => void;
}

const link = new Link({ latency: null, blackholed: false }, new Rng(1));
/** Its listening sockets, by entry (at most one each). */
const listeners = new Map<string, Server>();
const waiting = new Map<number, Waiting>();
let nextId = 1;
let live = 0;
let closed: Record<string, number> = {};
let abandoned: Record<string, number> = {};
let timedOut: Record<string, number> = {};
/** Sweeps the queues for devices past their queue timeout while any device is queued. */
let sweeper: NodeJS.Timeout | undefined;
/** How often queued devices are checked against their queue timeout. */
const SWEEP_MS = 100;
let reporting = false;
/** Connect slots of the nodes whose balancer has a `maxConnecting`. */
const slots = new Map<string, Slots>();
let asks: RelayAsk['asks'] = [];

function send(m: RelayAsk | RelayClosed | { op: 'ready' }): void {
  if (process.connected) process.send?.(m);
}

function finished(nodeId: string): void {
  live--;
  uncount(nodeId);
}

/** Reports one connection to `nodeId` gone (coalesced per event-loop turn). */
function uncount(nodeId: string): void {
  closed[nodeId] = (closed[nodeId] ?? 0) + 1;
  if (reporting) return;
  reporting = true;
  setImmediate(() => {
    reporting = false;
    const counts = closed;
    const m: RelayClosed = { op: 'closed', counts };
    if (Object.keys(abandoned).length > 0) m.abandoned = abandoned;
    if (Object.keys(timedOut).length > 0) m.timedOut = timedOut;
    closed = {};
    abandoned = {};
    timedOut = {};
    send(m);
  });
}

function accepted(entry: string, socket: Socket): void {
  socket.on('error', () => {});
  if (live >= capacity) {
    // Full (its open files): this device goes; its reconnect may land on another relay.
    resetSocket(socket);
    return;
  }
  live++;
  // Its bytes are read from the start, so a device that gives up (FIN) before its node is
  // known is dropped, not relayed: one whose connect timed out while it waited in the accept
  // queue has its FIN read with its request, and is gone before it is asked about.
  const early: Buffer[] = [];
  const stopReading = readWhileWaiting(socket, early, EARLY_BYTES, () => socket.destroy());
  const address = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
  ask({ socket, entry, address, tried: [], early, stopReading });
}

/** The device's node is known: its bytes go to the relay from here on. */
function settled(w: Waiting): void {
  w.stopReading();
  // Paused past EARLY_BYTES: the relay reads on from here (its listener comes before any data).
  w.socket.resume();
}

/** Asks the network for a device's node: coalesced with the others of this event-loop turn. */
function ask(w: Waiting): void {
  const id = nextId++;
  waiting.set(id, w);
  if (asks.length === 0) {
    setImmediate(() => {
      // Devices that left meanwhile are not asked about.
      const batch = asks.filter(([id]) => {
        const w = waiting.get(id);
        if (w === undefined || !w.socket.destroyed) return true;
        waiting.delete(id);
        live--;
        return false;
      });
      asks = [];
      if (batch.length > 0) send({ op: 'ask', asks: batch });
    });
  }
  asks.push(w.tried.length > 0 ? [id, w.entry, w.address, w.tried] : [id, w.entry, w.address]);
}

/** Its node refused a device's connect: uncounted there, asked again without it, or reset after the last. */
function refused(w: Waiting, nodeId: string): void {
  uncount(nodeId);
  if (w.socket.destroyed) {
    live--;
    return;
  }
  w.tried.push(nodeId);
  if (w.tried.length > redispatches) {
    live--;
    resetSocket(w.socket);
    return;
  }
  ask(w);
}

function answered(a: RelayAnswerItem): void {
  const w = waiting.get(a[0]);
  if (!w) return;
  waiting.delete(a[0]);
  const client = w.socket;
  if (a.length === 2) {
    settled(w);
    live--;
    if (a[1] === 'reset') resetSocket(client);
    else client.destroy();
    return;
  }
  const [, nodeId, host, port, maxConnecting, queueTimeoutMs] = a;
  if (client.destroyed) {
    finished(nodeId);
    return;
  }
  if (maxConnecting !== undefined && nodeId !== '') {
    let s = slots.get(nodeId);
    if (!s) {
      s = { connecting: 0, queue: new Set(), timeoutMs: queueTimeoutMs ?? Infinity };
      slots.set(nodeId, s);
    }
    if (s.connecting >= maxConnecting) {
      // Its bytes are still collected, so a device that gives up here is dropped unseen,
      // and uncounted on its node at once.
      const queue = s.queue;
      const q: Queued = { w, atMs: performance.now(), host, port, left: () => {} };
      q.left = () => {
        queue.delete(q);
        abandoned[nodeId] = (abandoned[nodeId] ?? 0) + 1;
        finished(nodeId);
      };
      client.once('close', q.left);
      queue.add(q);
      if (sweeper === undefined && Number.isFinite(s.timeoutMs))
        sweeper = setInterval(sweep, SWEEP_MS);
      return;
    }
    s.connecting++;
  }
  carry(w, nodeId, host, port);
}

/**
 * A connect to `nodeId` that held one of its slots is over (the node's first
 * bytes, or its close): the next queued device still here takes the slot.
 */
function slotFreed(nodeId: string): void {
  const s = slots.get(nodeId);
  if (!s) return;
  s.connecting--;
  for (const next of s.queue) {
    s.queue.delete(next);
    next.w.socket.off('close', next.left);
    if (next.w.socket.destroyed) {
      // Gone this very turn (its close not yet emitted).
      abandoned[nodeId] = (abandoned[nodeId] ?? 0) + 1;
      finished(nodeId);
      continue;
    }
    s.connecting++;
    carry(next.w, nodeId, next.host, next.port);
    return;
  }
}

/** Resets the queued devices that waited past their queue timeout (the oldest first). */
function sweep(): void {
  const now = performance.now();
  let queued = 0;
  for (const [nodeId, s] of slots) {
    for (const q of s.queue) {
      if (now - q.atMs < s.timeoutMs) break;
      s.queue.delete(q);
      q.w.socket.off('close', q.left);
      timedOut[nodeId] = (timedOut[nodeId] ?? 0) + 1;
      settled(q.w);
      resetSocket(q.w.socket);
      finished(nodeId);
    }
    queued += s.queue.size;
  }
  if (queued === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/** Connects device `w` to its node and relays (with redispatch: once the node is up). */
function carry(w: Waiting, nodeId: string, host: string, port: number): void {
  const client = w.socket;
  client.setNoDelay(true);
  const localAddress = sources.length > 0 ? sources[nextSource++ % sources.length] : undefined;
  const node = connect({ host, port, localAddress, allowHalfOpen: true, noDelay: true });
  if (slots.has(nodeId)) {
    // Its slot is held until the node answers (its upgrade response) or the connection ends.
    let held = true;
    const free = () => {
      if (!held) return;
      held = false;
      node.off('data', free);
      slotFreed(nodeId);
    };
    node.on('data', free);
    node.once('close', free);
  }
  if (redispatches > 0 && nodeId !== '') {
    // The device's bytes are still collected until the node is up.
    const failed = () => refused(w, nodeId);
    node.once('error', failed);
    node.once('connect', () => {
      node.off('error', failed);
      if (client.destroyed) {
        node.destroy();
        finished(nodeId);
        return;
      }
      settled(w);
      relay(client, node, nodeId, w.early);
    });
    return;
  }
  settled(w);
  relay(client, node, nodeId, w.early);
}

/** Relays a device and its node both ways until both close, what the device sent first first. */
function relay(client: Socket, node: Socket, nodeId: string, early: Buffer[]): void {
  let ends = 0;
  const ended = () => {
    if (++ends === 2) finished(nodeId);
  };
  client.once('close', ended);
  node.once('close', ended);
  node.on('error', () => resetSocket(client));
  const r = link.relay(client, node);
  for (const chunk of early) r.fromClient(chunk);
}

process.on('message', (m: unknown, handle: unknown) => {
  const msg = m as {
    op?: unknown;
    entry?: unknown;
    entries?: unknown;
    answers?: unknown;
    handBack?: unknown;
  };
  if (msg?.op === 'listen' && typeof msg.entry === 'string' && handle) {
    // A server of our own on the raw handle, with the full accept queue (Node's default,
    // 511, would reset the shared socket's on Linux), and half-open sockets (a device's
    // FIN is relayed on its own).
    const entry = msg.entry;
    const server = createServer({ allowHalfOpen: true }, (socket: Socket) =>
      accepted(entry, socket),
    );
    server.listen(handle as Server, BACKLOG);
    listeners.get(entry)?.close();
    listeners.set(entry, server);
    if (msg.handBack === true && process.connected) {
      const held: RelayHeld = { op: 'held', entry };
      process.send?.(held, handle as Server, { keepOpen: true });
    }
    return;
  }
  if (msg?.op === 'unlisten' && Array.isArray(msg.entries)) {
    for (const entry of msg.entries) {
      listeners.get(String(entry))?.close();
      listeners.delete(String(entry));
    }
    return;
  }
  if (msg?.op === 'answer' && Array.isArray(msg.answers)) {
    for (const a of msg.answers as RelayAnswerItem[]) answered(a);
  }
});
process.on('disconnect', () => process.exit(0));
send({ op: 'ready' });
