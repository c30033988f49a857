/**
 * What a device's source-address bind costs at connect: the same lean devices
 * opened at a steady rate against a one-process node, with no bind (the
 * kernel picks the port inside connect()) and bound with N devices per source
 * address, as the fleet's placement spreads them (loadgen/placement.ts
 * DEVICES_PER_ADDRESS). Variants alternate for `rounds` rounds; the client's
 * CPU per connect (user + system, this process) is the figure, the node's
 * beside it as the noise gauge. Devices that failed are printed: a full
 * address's port search ends in EADDRINUSE.
 *
 *   node --import tsx bench/bind-cost.ts [connections=15000] [rate=2000] [rounds=2] [perAddress=0,64,2048,20000]
 */
import type { WsClientConnection } from '../loadgen/ws-client/connection.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { openAtRate, processCpuSeconds, selfCpuSeconds, sleep } from './cpu.js';
import { BENCH_SECRET, connectDevice, countingSink, deviceToken } from './lean-devices.js';

const total = Number(process.argv[2] ?? 15_000);
const rate = Number(process.argv[3] ?? 2000);
const rounds = Number(process.argv[4] ?? 2);
const variants = (process.argv[5] ?? '0,64,2048,20000').split(',').map(Number);

const tokens = Array.from({ length: total }, (_, i) => deviceToken(i));

async function once(perAddress: number, net: number): Promise<{ client: number; node: number }> {
  const node = await startNodeProcess({
    nodeId: 'bind',
    secret: BENCH_SECRET,
    apiKey: 'bench-key',
    heartbeatIntervalMs: 30_000,
    heartbeatTimeoutMs: 90_000,
  });
  await sleep(2000);
  const { sink, counts } = countingSink();
  const conns: WsClientConnection[] = [];
  const node0 = processCpuSeconds(node.pid);
  const self0 = selfCpuSeconds();
  await openAtRate(
    total,
    rate,
    (i) => conns.push(connectDevice(sink, i, node, tokens[i]!, true, { perAddress, net })),
    () => counts.open + counts.failed >= total,
  );
  const open = counts.open;
  const result = {
    client: ((selfCpuSeconds() - self0) * 1e6) / open,
    node: ((processCpuSeconds(node.pid) - node0) * 1e6) / open,
  };
  if (counts.failed > 0) console.log(`  (${counts.failed} failed)`);
  for (const c of conns) c.destroy();
  await node.stop();
  await sleep(1000);
  return result;
}

const label = (n: number) => (n === 0 ? 'no bind' : `${n} per address`);
const seen = new Map<number, number[]>();
console.log(`${total} connects at ${rate}/s, one-process node; µs of CPU per connect`);
// Each run binds in a /16 of its own (127.10.x.y on), away from the last runs' TIME_WAIT ports.
let net = 10;
for (let r = 0; r < rounds; r++) {
  for (const v of variants) {
    const f = await once(v, net++);
    seen.set(v, [...(seen.get(v) ?? []), f.client]);
    console.log(
      `round ${r + 1}  ${label(v).padEnd(18)} client ${f.client.toFixed(0).padStart(4)}  node ${f.node.toFixed(0).padStart(4)}`,
    );
  }
}
const base = variants.find((v) => v > 0) ?? variants[0]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const v of variants) {
  console.log(
    `${label(v).padEnd(18)} client mean ${mean(seen.get(v)!).toFixed(0)} us, ${(mean(seen.get(v)!) / mean(seen.get(base)!)).toFixed(2)}x ${label(base)}`,
  );
}
