/**
 * One relay of a network in relay mode (relays.ts): a child of the network
 * process that accepts devices itself, on listening sockets it shares with the
 * other relays, asks the network which node each goes to, connects to that
 * node and relays both ways through a faultless {@link Link} (half-open FINs
 * travel on their own; a reset tears the other side down). It reports each
 * finished connection back, so the balancer's per-node counts stay exact
 * within one IPC hop. At its connection capacity it stops accepting and
 * leaves new devices to the other relays. Exits when its parent's channel
 * closes.
 *
 * Messages: it says `{op: "ready"}`; takes `{op: "listen", entry}` with a
 * listening server handle; asks `{op: "ask", asks: [[id, entry, address], …]}`;
 * takes `{op: "answer", answers: [[id, nodeId, host, port] | [id, "reset" |
 * "close"], …]}`; sends `{op: "closed", counts: {nodeId: n}}`. Asks and
 * closes are coalesced per event-loop turn (a burst of accepts is one message).
 */
import { connect, type Server, type Socket } from 'node:net';
import { Rng } from '../../core/rng.js';
import { Link, resetSocket } from './link.js';

/** One answer: the node to carry device `id` to, or a refusal (reset: RST; close: FIN). */
export type RelayAnswerItem =
  | [id: number, nodeId: string, host: string, port: number]
  | [id: number, refuse: 'reset' | 'close'];

/** What the network answers a batch of asks with. */
export interface RelayAnswer {
  op: 'answer';
  answers: RelayAnswerItem[];
}

/** What a relay asks, for each device it accepted on `entry` from `address`. */
export interface RelayAsk {
  op: 'ask';
  asks: [id: number, entry: string, address: string][];
}

/** What a relay reports: connections finished since its last report, per node. */
export interface RelayClosed {
  op: 'closed';
  counts: Record<string, number>;
}

/** Connections this relay carries before it stops accepting (from its parent). */
const capacity = Number(process.env.PUSHBENCH_RELAY_CAPACITY ?? '1000000');

const link = new Link({ latency: null, blackholed: false }, new Rng(1));
const listeners = new Set<Server>();
const waiting = new Map<number, Socket>();
let nextId = 1;
let live = 0;
let closed: Record<string, number> = {};
let reporting = false;
let asks: RelayAsk['asks'] = [];

function send(m: RelayAsk | RelayClosed | { op: 'ready' }): void {
  if (process.connected) process.send?.(m);
}

function finished(nodeId: string): void {
  live--;
  closed[nodeId] = (closed[nodeId] ?? 0) + 1;
  if (reporting) return;
  reporting = true;
  setImmediate(() => {
    reporting = false;
    const counts = closed;
    closed = {};
    send({ op: 'closed', counts });
  });
}

function accepted(entry: string, socket: Socket): void {
  socket.on('error', () => {});
  live++;
  if (live >= capacity) {
    // Full: the other relays take the next devices.
    for (const l of listeners) l.close();
    listeners.clear();
  }
  const id = nextId++;
  waiting.set(id, socket);
  if (asks.length === 0) {
    setImmediate(() => {
      const batch = asks;
      asks = [];
      send({ op: 'ask', asks: batch });
    });
  }
  asks.push([id, entry, (socket.remoteAddress ?? '').replace(/^::ffff:/, '')]);
}

function answered(a: RelayAnswerItem): void {
  const client = waiting.get(a[0]);
  if (!client) return;
  waiting.delete(a[0]);
  if (a.length === 2) {
    live--;
    if (a[1] === 'reset') resetSocket(client);
    else client.destroy();
    return;
  }
  const [, nodeId, host, port] = a;
  if (client.destroyed) {
    finished(nodeId);
    return;
  }
  // A device's FIN is relayed on its own, not turned into a full close.
  client.allowHalfOpen = true;
  client.setNoDelay(true);
  const node = connect({ host, port, allowHalfOpen: true, noDelay: true });
  let ends = 0;
  const ended = () => {
    if (++ends === 2) finished(nodeId);
  };
  client.once('close', ended);
  node.once('close', ended);
  node.on('error', () => resetSocket(client));
  link.relay(client, node);
}

process.on('message', (m: unknown, handle: unknown) => {
  const msg = m as { op?: unknown; entry?: unknown; answers?: unknown };
  if (msg?.op === 'listen' && typeof msg.entry === 'string' && handle) {
    const server = handle as Server;
    const entry = msg.entry;
    server.on('connection', (socket: Socket) => accepted(entry, socket));
    listeners.add(server);
    return;
  }
  if (msg?.op === 'answer' && Array.isArray(msg.answers)) {
    for (const a of msg.answers as RelayAnswerItem[]) answered(a);
  }
});
process.on('disconnect', () => process.exit(0));
send({ op: 'ready' });
