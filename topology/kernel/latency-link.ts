/**
 * One node's latency link on the kernel engine (there is no netem in this
 * kernel): a small process on the node's own host, between the node's port
 * and whatever reaches it (devices, a balancer, health checks); or, on either
 * engine, between a node and its datastore (Redis or the hub). It relays each
 * connection through the userland fabric's {@link Link} (one delay queue, one
 * timer, order kept). It carries only this node's connections, so it is
 * capped by one node's connections, not by the run's.
 *
 * Started with `PUSHBENCH_LINK` = `{"listen": {host, port}, "target": {host,
 * port}, "seed"}`; prints `link-listening <port>` once it accepts; takes
 * `{"op": "latency", "delayMs", "jitterMs"}`, `{"op": "clear"}`, `{"op": "cut"}`
 * (every connection reset, new ones reset at once: the datastore is down as
 * far as the node can tell) and `{"op": "restore"}` over Node IPC; exits when
 * its parent's channel closes.
 */
import { connect, createServer, type Socket } from 'node:net';
import { Rng } from '../../core/rng.js';
import { Link, type LinkFaults, resetSocket } from '../network/link.js';

interface LinkSpec {
  listen: { host: string; port: number };
  target: { host: string; port: number };
  seed: number;
}

/** Messages the link takes. */
export type LinkMessage =
  | { op: 'latency'; delayMs: number; jitterMs: number }
  | { op: 'clear' }
  | { op: 'cut' }
  | { op: 'restore' };

const spec = JSON.parse(process.env.PUSHBENCH_LINK ?? 'null') as LinkSpec | null;
if (spec === null) {
  process.stderr.write('latency link: PUSHBENCH_LINK is not set\n');
  process.exit(2);
}
const faults: LinkFaults = { latency: null, blackholed: false };
const link = new Link(faults, new Rng(spec.seed));
let cut = false;

const server = createServer({ noDelay: true }, (client: Socket) => {
  client.on('error', () => {});
  if (cut) {
    resetSocket(client);
    return;
  }
  const node = connect({ host: spec.target.host, port: spec.target.port, noDelay: true });
  node.on('error', () => resetSocket(client));
  link.relay(client, node);
});
server.listen({ host: spec.listen.host, port: spec.listen.port, backlog: 65_535 }, () => {
  // The port it got (the spec may ask for 0).
  process.stdout.write(`link-listening ${(server.address() as { port: number }).port}\n`);
});
process.on('message', (m: LinkMessage) => {
  if (m?.op === 'latency' && Number.isFinite(m.delayMs) && Number.isFinite(m.jitterMs)) {
    faults.latency = { delayMs: Math.max(0, m.delayMs), jitterMs: Math.max(0, m.jitterMs) };
  } else if (m?.op === 'clear') {
    faults.latency = null;
  } else if (m?.op === 'cut') {
    cut = true;
    link.resetAll();
  } else if (m?.op === 'restore') {
    cut = false;
  }
  link.faultsChanged();
});
process.on('disconnect', () => process.exit(0));
