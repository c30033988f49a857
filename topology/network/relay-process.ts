/**
 * One relay of a network in hand-off mode (relays.ts): a child of the network
 * process that receives accepted device sockets over IPC, each with the node
 * its balancer picked, connects to that node and relays both ways through a
 * faultless {@link Link} (half-open FINs travel on their own; a reset tears
 * the other side down). It reports each finished connection back, so the
 * balancer's per-node counts stay exact within one IPC hop. Exits when its
 * parent's channel closes.
 *
 * Says `{op: "ready"}` once it listens; takes `{op: "carry", nodeId, host,
 * port}` with a socket handle; sends `{op: "closed", counts: {nodeId: n}}`,
 * coalesced per event-loop turn.
 */
import { connect, type Socket } from 'node:net';
import { Rng } from '../../core/rng.js';
import { Link, resetSocket } from './link.js';

/** What the network sends a relay with each socket. */
export interface CarryMessage {
  op: 'carry';
  nodeId: string;
  host: string;
  port: number;
}

/** What a relay reports back: connections finished since its last report, per node. */
export interface ClosedMessage {
  op: 'closed';
  counts: Record<string, number>;
}

const link = new Link({ latency: null, blackholed: false }, new Rng(1));
let closed: Record<string, number> = {};
let reporting = false;

function report(nodeId: string): void {
  closed[nodeId] = (closed[nodeId] ?? 0) + 1;
  if (reporting) return;
  reporting = true;
  setImmediate(() => {
    reporting = false;
    const counts = closed;
    closed = {};
    if (process.connected) process.send?.({ op: 'closed', counts } satisfies ClosedMessage);
  });
}

function isCarry(m: unknown): m is CarryMessage {
  const c = m as CarryMessage;
  return (
    typeof m === 'object' &&
    m !== null &&
    c.op === 'carry' &&
    typeof c.nodeId === 'string' &&
    typeof c.host === 'string' &&
    Number.isInteger(c.port)
  );
}

process.on('message', (m: unknown, handle: unknown) => {
  const client = handle as Socket | undefined;
  if (!client || typeof client.destroy !== 'function') return;
  if (!isCarry(m)) {
    client.destroy();
    return;
  }
  // A device's FIN is relayed on its own, not turned into a full close.
  client.allowHalfOpen = true;
  client.setNoDelay(true);
  const node = connect({ host: m.host, port: m.port, allowHalfOpen: true, noDelay: true });
  let ends = 0;
  const ended = () => {
    if (++ends === 2) report(m.nodeId);
  };
  client.once('close', ended);
  node.once('close', ended);
  node.on('error', () => resetSocket(client));
  link.relay(client, node);
});
process.on('disconnect', () => process.exit(0));
process.send?.({ op: 'ready' });
