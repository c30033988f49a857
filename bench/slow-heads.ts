/**
 * Slow upgrades against a node in its own process: N sockets each send a
 * partial upgrade request and then one header line every 5 s, as in issue 15's
 * report (18,500 sockets held a node for 83 s). Meanwhile a normal device
 * connects and receives a push. Prints what the node did with the slow ones
 * (its own counters) and how many are still open after its head timeout.
 *
 *   node --import tsx bench/slow-heads.ts [sockets=18000] [seconds=14]
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { signToken } from '../server/token.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { sleep } from './cpu.js';

const total = Number(process.argv[2] ?? 18_000);
const seconds = Number(process.argv[3] ?? 14);
const SECRET = 'slow-secret';
const KEY = 'slow-key';

const node = await startNodeProcess({
  nodeId: 'slow',
  secret: SECRET,
  apiKey: KEY,
  heartbeatIntervalMs: 30_000,
  heartbeatTimeoutMs: 60_000,
});
const sockets: Socket[] = [];
let closedBy503 = 0;
let closedBy408 = 0;
let open = 0;
const t0 = Date.now();
for (let i = 0; i < total; i++) {
  const s = connect({
    host: node.host,
    port: node.port,
    localAddress: `127.0.${1 + (i % 200)}.${1 + ((i / 200) | 0)}`,
  });
  s.on('error', () => {});
  let text = '';
  s.on('data', (d) => {
    text += d.toString('latin1');
  });
  s.on('connect', () => {
    open++;
    s.write('GET /ws?token=x HTTP/1.1\r\nHost: n\r\n');
  });
  s.on('close', () => {
    open--;
    if (text.startsWith('HTTP/1.1 503')) closedBy503++;
    else if (text.startsWith('HTTP/1.1 408')) closedBy408++;
  });
  sockets.push(s);
  if (i % 500 === 499) await sleep(10);
}
const drip = setInterval(() => {
  for (const s of sockets) if (!s.destroyed) s.write('X-Drip: 1\r\n');
}, 5000);
console.log(`${total} slow sockets started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

// A normal device, while the slow ones hold on.
await sleep(2000);
const token = signToken(
  { deviceId: 'normal', accountId: 'a', expiresAtSec: Date.now() / 1000 + 600 },
  SECRET,
);
const ws = new WebSocket(`${node.wsUrl}?token=${token}`);
const c0 = Date.now();
await once(ws, 'open');
const connectMs = Date.now() - c0;
const got = once(ws, 'message');
const res = await fetch(`${node.httpUrl}/v1/push/normal`, {
  method: 'POST',
  headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
  body: JSON.stringify({ payload: { hi: 1 } }),
});
await got;
console.log(
  `normal device: connected in ${connectMs} ms, push answered ${res.status} and received`,
);
ws.close();

await sleep(Math.max(0, seconds * 1000 - (Date.now() - t0)));
clearInterval(drip);
const metrics = (await (await fetch(`${node.httpUrl}/metrics.json`)).json()) as {
  metrics: Record<string, Record<string, number>>;
};
const refused = metrics.metrics.pushbench_upgrades_refused_total ?? {};
console.log(`after ${seconds} s: slow sockets still open ${open} of ${total}`);
console.log(`  closed with 503 pending_shed ${closedBy503}, with 408 head_too_slow ${closedBy408}`);
console.log(`  node counted: ${JSON.stringify(refused)}`);
for (const s of sockets) s.destroy();
await node.stop();
