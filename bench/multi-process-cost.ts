/**
 * What a node of several processes (`serve --processes N`) costs beside a
 * one-process node: its CPU while idle, and its CPU per connect when devices
 * arrive at a steady rate (open model, as a `hold` brings them) rather than in
 * one burst (bench/connect-cost.ts). Starts a reference node, measures its
 * whole process tree (primary, hub, workers) from /proc for 10 s with nothing
 * connected, then opens N lean devices at R per second and reads the tree's
 * CPU and the primary's share. Then the floor of the same shape
 * (bench/multi-process-floor.ts: raw `net` processes, a minimal hub round trip) in the same
 * run, and pushbench / floor.
 *
 *   npx tsx bench/multi-process-cost.ts [connections=15000] [rate=2000] [processes=14] [acceptors=all]
 */
import { monoNowUs } from '../core/clock.js';
import { descendantsOf, readProcessStats } from '../core/process-stats.js';
import type { WsClientConnection } from '../loadgen/ws-client/connection.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { openAtRate, selfCpuSeconds, sleep } from './cpu.js';
import { BENCH_SECRET, connectDevice, countingSink, deviceToken } from './lean-devices.js';
import { measureMultiProcessFloor } from './multi-process-floor.js';

const total = Number(process.argv[2] ?? 15_000);
const rate = Number(process.argv[3] ?? 2000);
const processes = Number(process.argv[4] ?? 14);
const acceptors = process.argv[5] === undefined ? undefined : Number(process.argv[5]);

/** CPU seconds of `pid` and every descendant. */
function treeCpuSeconds(pid: number): number {
  let sum = 0;
  for (const p of [pid, ...descendantsOf(pid)]) sum += readProcessStats(p)?.cpuSeconds ?? 0;
  return sum;
}

const node = await startNodeProcess({
  nodeId: 'mp',
  secret: BENCH_SECRET,
  apiKey: 'bench-key',
  heartbeatIntervalMs: 30_000,
  heartbeatTimeoutMs: 90_000,
  processes,
  ...(acceptors !== undefined && { extraArgs: ['--acceptors', String(acceptors)] }),
});
await sleep(3000);
const idle0 = treeCpuSeconds(node.pid);
await sleep(10_000);
const idleMsPerS = ((treeCpuSeconds(node.pid) - idle0) / 10) * 1000;

const { sink, counts } = countingSink();
const tokens = Array.from({ length: total }, (_, i) => deviceToken(i));
const conns: WsClientConnection[] = [];
const tree0 = treeCpuSeconds(node.pid);
const workers0 = new Map(
  descendantsOf(node.pid).map((p) => [p, readProcessStats(p)?.cpuSeconds ?? 0]),
);
const primary0 = readProcessStats(node.pid)?.cpuSeconds ?? 0;
const self0 = selfCpuSeconds();
const t0 = monoNowUs();
await openAtRate(
  total,
  rate,
  (i) => conns.push(connectDevice(sink, i, node, tokens[i]!, true)),
  () => counts.open + counts.failed >= total,
);
const seconds = (monoNowUs() - t0) / 1e6;
const connected = counts.open;
const per = (s: number) => ((s * 1e6) / Math.max(1, connected)).toFixed(0);
const tree = treeCpuSeconds(node.pid) - tree0;
const primary = (readProcessStats(node.pid)?.cpuSeconds ?? 0) - primary0;
const client = selfCpuSeconds() - self0;
console.log(
  `node of ${processes} process(es), ${acceptors ?? processes} accepting: idle ${idleMsPerS.toFixed(0)} ms CPU/s; ` +
    `${counts.open} connects (${counts.failed} failed) at ${rate}/s in ${seconds.toFixed(1)} s: ` +
    `node ${per(tree)} us per connect (primary ${per(primary)}), client ${per(client)} us`,
);
// Each worker's share: with few acceptors, how much the others pay while not accepting.
const shares = [...workers0]
  .map(([p, before]) => ((readProcessStats(p)?.cpuSeconds ?? before) - before) * 1e6)
  .sort((a, b) => b - a)
  .map((us) => (us / Math.max(1, connected)).toFixed(0));
console.log(`  workers' us per connect, busiest first: ${shares.join(' ')}`);
for (const c of conns) c.destroy();
await node.stop();

// The floor of the same shape, in the same run (bench/multi-process-floor.ts): as many raw
// `net` processes sharing the port, as many of them accepting, one hub round trip per connect.
await sleep(1000);
const floor = await measureMultiProcessFloor(total, rate, processes, processes > 1, acceptors);
console.log(
  `floor of the same shape (raw net, ${floor.acceptors} accepting${floor.hub ? ', hub floor' : ''}): ` +
    `node ${floor.nodeUs.toFixed(0)} us per connect (primary ${floor.primaryUs.toFixed(0)}), client ${floor.clientUs.toFixed(0)} us; ` +
    `pushbench / floor, node CPU per connect: ${(Number(per(tree)) / floor.nodeUs).toFixed(2)}`,
);
