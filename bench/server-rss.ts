/**
 * Measures a reference node's memory per idle connection: starts `pushbench
 * serve` as its own process, reads its RSS from /proc, opens N device
 * connections from this process (paced, through the lean client), lets them
 * idle, reads RSS again, and prints the difference per connection. Figures are
 * from /proc, not from the node's own counters.
 *
 *   npx tsx bench/server-rss.ts [connections=15000] [ratePerSec=3000]
 */
import { readFileSync } from 'node:fs';
import { monoNowUs } from '../core/clock.js';
import type { WsClientConnection } from '../loadgen/ws-client/connection.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { BENCH_SECRET, connectDevice, countingSink, deviceToken } from './lean-devices.js';

const total = Number(process.argv[2] ?? 15_000);
const rate = Number(process.argv[3] ?? 3000);

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

function slabKb(): number {
  const m = /Slab:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return Number(m?.[1] ?? 0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const node = await startNodeProcess({
    nodeId: 'rss',
    secret: BENCH_SECRET,
    apiKey: 'bench-key',
    heartbeatIntervalMs: 30_000,
    heartbeatTimeoutMs: 90_000,
  });
  await sleep(1500);
  const before = rssKb(node.pid);
  const slabBefore = slabKb();
  const { sink, counts } = countingSink();
  const conns: WsClientConnection[] = [];
  const startUs = monoNowUs();
  // RSS is also read at a third of the way, so the slope between the two readings
  // excludes fixed costs (V8's young generation grows ~25 MB while connecting).
  const mark = Math.floor(total / 3);
  let atMark = 0;
  let heldAtMark = 0;
  for (let i = 0; i < total; i++) {
    if (i === mark) {
      while (counts.open + counts.failed < mark) await sleep(50);
      await sleep(3000);
      atMark = rssKb(node.pid);
      heldAtMark = counts.open;
    }
    // Paced, not a burst: a burst raises heap high-water marks and overstates memory.
    const due = startUs + (i * 1e6) / rate;
    const wait = (due - monoNowUs()) / 1000;
    if (wait > 1) await sleep(wait);
    const c = connectDevice(sink, i, node, deviceToken(i));
    conns.push(c);
  }
  while (counts.open + counts.failed < total) await sleep(100);
  // Idle for a while so the node's GC settles.
  await sleep(8000);
  const after = rssKb(node.pid);
  const slabAfter = slabKb();
  const held = counts.open;
  const perConnKb = (after - before) / Math.max(1, held);
  const metrics = (await (await fetch(`${node.httpUrl}/metrics.json`)).json()) as {
    connections: number;
  };
  console.log(
    `node RSS before ${before} kB, after ${after} kB with ${held} connections held (node counts ${metrics.connections}, ${counts.failed} failed)`,
  );
  console.log(
    `node RSS per idle connection: ${perConnKb.toFixed(2)} kB (all connections over the idle baseline)`,
  );
  console.log(
    `node RSS slope ${heldAtMark} -> ${held} connections: ${((after - atMark) / Math.max(1, held - heldAtMark)).toFixed(2)} kB per connection`,
  );
  console.log(
    `kernel slab grew ${slabAfter - slabBefore} kB (${((slabAfter - slabBefore) / Math.max(1, held)).toFixed(2)} kB per connection, both ends, whole machine)`,
  );
  for (const c of conns) c.destroy();
  await node.stop();
}

await main();
