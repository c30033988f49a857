/**
 * What one connect and one heartbeat cost in CPU, at both ends: starts a
 * reference node (`pushbench serve`, its own process, heartbeats every second),
 * opens N device connections from this process through the lean client as
 * fast as it goes (at most 2,000 in flight), four times (bare, then asking for
 * the node's hello frame as the fleet does, twice each), and holds the last N
 * for a few heartbeat periods. CPU is read from /proc for the node and from
 * `process.cpuUsage()` here; figures are per connection and per heartbeat
 * (ping, pong, both ends). These are the planning figures the preflight's
 * CPU estimate uses (run/preflight.ts), re-measured on this machine.
 *
 *   npx tsx bench/connect-cost.ts [connections=15000] [holdSeconds=6]
 */
import { availableParallelism } from 'node:os';
import { monoNowUs } from '../core/clock.js';
import type { WsClientConnection } from '../loadgen/ws-client/connection.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { processCpuSeconds, selfCpuSeconds, sleep } from './cpu.js';
import { BENCH_SECRET, connectDevice, countingSink, deviceToken } from './lean-devices.js';

const total = Number(process.argv[2] ?? 15_000);
const holdSeconds = Number(process.argv[3] ?? 6);
const IN_FLIGHT = 2000;

/**
 * Opens `total` devices (ids from `first`) against `node` as fast as it goes
 * and prints what the connects cost at each end.
 */
async function connectAll(
  node: { pid: number; host: string; port: number },
  first: number,
  hello: boolean,
): Promise<{ conns: WsClientConnection[]; counts: { open: number; failed: number } }> {
  const { sink, counts } = countingSink();
  // Signed up front: token signing is the publisher's business, not a connect's.
  const tokens = Array.from({ length: total }, (_, i) => deviceToken(first + i));
  const conns: WsClientConnection[] = [];
  const node0 = processCpuSeconds(node.pid);
  const self0 = selfCpuSeconds();
  const t0 = monoNowUs();
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      let n = 0;
      while (i < total && n < 200 && i - counts.open - counts.failed < IN_FLIGHT) {
        conns.push(connectDevice(sink, first + i, node, tokens[i]!, hello));
        i++;
        n++;
      }
      if (counts.open + counts.failed >= total) resolve();
      else setImmediate(tick);
    };
    tick();
  });
  const connectS = (monoNowUs() - t0) / 1e6;
  const nodeConnect = processCpuSeconds(node.pid) - node0;
  const selfConnect = selfCpuSeconds() - self0;
  const perConn = (s: number) => (s * 1e6) / Math.max(1, counts.open);
  const what = hello ? 'with hello=1 (as the fleet connects)' : 'bare';
  console.log(
    `connect ${what}: ${counts.open} open, ${counts.failed} failed in ${connectS.toFixed(2)} s (${(counts.open / connectS).toFixed(0)}/s, both ends on ${availableParallelism()} cores)`,
  );
  console.log(
    `  CPU per connection: node ${perConn(nodeConnect).toFixed(0)} us, client ${perConn(selfConnect).toFixed(0)} us, both ${perConn(nodeConnect + selfConnect).toFixed(0)} us`,
  );
  return { conns, counts };
}

async function main(): Promise<void> {
  const started = await startNodeProcess({
    nodeId: 'cost',
    secret: BENCH_SECRET,
    apiKey: 'bench-key',
    heartbeatIntervalMs: 1000,
    heartbeatTimeoutMs: 30_000,
  });
  const node = started;
  await sleep(1000);
  // Bare and the fleet's way (the node also writes a hello frame), alternating so
  // that warm-up and the box's drift do not favour one; every round but the last
  // is closed again, and the last is held for the heartbeat figures.
  let round = { conns: [] as WsClientConnection[], counts: { open: 0, failed: 0 } };
  for (let r = 0; r < 4; r++) {
    for (const c of round.conns) c.destroy();
    if (r > 0) await sleep(2000);
    round = await connectAll(node, r * total, r % 2 === 1);
  }
  const { conns, counts } = round;

  // Hold: every connection is pinged once a second and answers with a pong.
  await sleep(2000);
  const node1 = processCpuSeconds(node.pid);
  const self1 = selfCpuSeconds();
  const h0 = monoNowUs();
  await sleep(holdSeconds * 1000);
  const heldS = (monoNowUs() - h0) / 1e6;
  const beats = counts.open * heldS;
  const nodeHold = processCpuSeconds(node.pid) - node1;
  const selfHold = selfCpuSeconds() - self1;
  const perBeat = (s: number) => (s * 1e6) / Math.max(1, beats);
  console.log(
    `heartbeat CPU (ping + pong): node ${perBeat(nodeHold).toFixed(1)} us, client ${perBeat(selfHold).toFixed(1)} us, both ${perBeat(nodeHold + selfHold).toFixed(1)} us (${counts.open} connections, 1 s interval, ${heldS.toFixed(1)} s)`,
  );
  for (const c of conns) c.destroy();
  await started.stop();
}

await main();
