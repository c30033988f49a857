/**
 * What relay mode (topology/network/relays.ts: the kernel engine's builtin
 * balancer) costs per connect beside the in-process userland fabric: N
 * connects at R/s through one network with an echo node, each echoed once,
 * CPU summed from /proc over this process and its children (the relays).
 * The clients and the echo node run in this process in both modes, so the
 * difference is the relays' own cost.
 *
 *   node --import tsx bench/relay-cost.ts RELAYS [N] [RATE]   (RELAYS 0: the in-process fabric)
 *
 * It prints the CPU of this process and its children per connect, and of the
 * children (the relays) alone.
 *
 * With RELAYS 0 this process holds four descriptors per connection (client,
 * both fabric sides, node), so N stays under (RLIMIT_NOFILE − 200) / 4.
 */

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Network } from '../topology/network/network.js';

const relays = Number(process.argv[2] ?? 1);
const N = Number(process.argv[3] ?? 4000);
const R = Number(process.argv[4] ?? 1500);
const files = Number(
  readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)/)?.[1] ?? 'Infinity',
);
if (4 * N + 200 > files) {
  console.error(`${N} connections need ${4 * N + 200} open files here; the limit is ${files}`);
  process.exit(2);
}
const node = net.createServer((s) => {
  s.on('error', () => {});
  s.on('data', (c) => {
    if (c.toString().startsWith('GET /healthz'))
      s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    else s.write(c);
  });
});
await new Promise<void>((r) => node.listen({ port: 0, host: '127.0.0.1', backlog: 65535 }, r));
const port = (node.address() as net.AddressInfo).port;
const network = await Network.start({
  host: '127.0.0.1',
  seed: 1,
  regions: [
    {
      name: 'eu',
      algorithm: 'least-connections',
      slowStartMs: 0,
      health: { intervalMs: 2000, timeoutMs: 1000, fall: 2, rise: 2 },
      backends: [{ nodeId: 'n1', host: '127.0.0.1', port }],
    },
  ],
  ...(relays > 0 && { relays: { count: relays, openFiles: 20000 } }),
});
const lp = network.addresses().regions.eu!.port;
const kids = () => {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
};
const cpuOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const relayCpu = () => kids().reduce((a, p) => a + cpuOf(p), 0);
const total = () => cpuOf(process.pid) + relayCpu();
const c0 = total();
const r0 = relayCpu();
const lat: number[] = [];
const socks: net.Socket[] = [];
const t0 = performance.now();
for (let j = 0; j < N; j++) {
  const due = t0 + (j * 1000) / R;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const s = net.connect(lp, '127.0.0.1');
  socks.push(s);
  s.on('error', () => {});
  s.once('connect', () => s.write('hi'));
  s.once('data', () => lat.push(performance.now() - due));
}
await new Promise((r) => setTimeout(r, 2000));
const c1 = total();
const r1 = relayCpu();
lat.sort((a, b) => a - b);
console.log(
  `relays=${relays} ${lat.length}/${N} echoed; p50 ${lat[lat.length >> 1]?.toFixed(1)} p99 ${lat[Math.floor(lat.length * 0.99)]?.toFixed(1)} ms; CPU ${(c1 - c0).toFixed(2)} s = ${(((c1 - c0) / N) * 1e6).toFixed(0)} us per connect (clients included), relays alone ${(((r1 - r0) / N) * 1e6).toFixed(0)} us`,
);
for (const s of socks) s.destroy();
await network.stop();
node.close();
process.exit(0);
