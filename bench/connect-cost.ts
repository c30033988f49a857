/**
 * What one connect and one heartbeat cost in CPU, at both ends: starts a
 * reference node (`pushbench serve`, its own process, heartbeats every second),
 * opens N device connections from this process through the lean client as
 * fast as it goes (at most 2,000 in flight), then holds them for a few
 * heartbeat periods. CPU is read from /proc for the node and from
 * `process.cpuUsage()` here; figures are per connection and per heartbeat
 * (ping, pong, both ends). These are the planning figures the preflight's
 * CPU estimate uses (run/preflight.ts), re-measured on this machine.
 *
 *   npx tsx bench/connect-cost.ts [connections=15000] [holdSeconds=6]
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { monoNowUs } from '../core/clock.js';
import {
  WsClientConnection,
  type WsClientSink,
  type WsCloseInfo,
} from '../loadgen/ws-client/connection.js';
import { signToken } from '../server/token.js';
import { startNodeProcess } from '../topology/supervisor.js';

const total = Number(process.argv[2] ?? 15_000);
const holdSeconds = Number(process.argv[3] ?? 6);
const IN_FLIGHT = 2000;
const CLK_TCK = 100;

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const secret = 'bench-secret';
  const node = await startNodeProcess({
    nodeId: 'cost',
    secret,
    apiKey: 'bench-key',
    heartbeatIntervalMs: 1000,
    heartbeatTimeoutMs: 30_000,
  });
  await sleep(1000);
  let open = 0;
  let failed = 0;
  const sink: WsClientSink = {
    onOpen: () => {
      open++;
    },
    onText: () => {},
    onClose: (_c, info: WsCloseInfo) => {
      if (info.opened) open--;
      else failed++;
    },
  };
  const exp = Math.floor(Date.now() / 1000) + 3600;
  // Signed up front: token signing is the publisher's business, not a connect's.
  const tokens = Array.from({ length: total }, (_, i) =>
    signToken({ deviceId: `d${i}`, accountId: `a${i % 100}`, expiresAtSec: exp }, secret),
  );
  const conns: WsClientConnection[] = [];
  const node0 = cpuSeconds(node.pid);
  const self0 = selfCpuSeconds();
  const t0 = monoNowUs();
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      let n = 0;
      while (i < total && n < 200 && i - open - failed < IN_FLIGHT) {
        const c = new WsClientConnection(sink, i);
        c.connect({
          host: node.host,
          port: node.port,
          path: `/ws?token=${tokens[i]}`,
          localAddress: `127.0.${1 + (i % 200)}.${1 + (((i / 200) | 0) % 250)}`,
        });
        conns.push(c);
        i++;
        n++;
      }
      if (open + failed >= total) resolve();
      else setImmediate(tick);
    };
    tick();
  });
  const connectS = (monoNowUs() - t0) / 1e6;
  const nodeConnect = cpuSeconds(node.pid) - node0;
  const selfConnect = selfCpuSeconds() - self0;
  const perConn = (s: number) => (s * 1e6) / Math.max(1, open);
  console.log(
    `connect: ${open} open, ${failed} failed in ${connectS.toFixed(2)} s (${(open / connectS).toFixed(0)}/s, both ends on ${availableParallelism()} cores)`,
  );
  console.log(
    `connect CPU per connection: node ${perConn(nodeConnect).toFixed(0)} us, client ${perConn(selfConnect).toFixed(0)} us, both ${perConn(nodeConnect + selfConnect).toFixed(0)} us`,
  );

  // Hold: every connection is pinged once a second and answers with a pong.
  await sleep(2000);
  const node1 = cpuSeconds(node.pid);
  const self1 = selfCpuSeconds();
  const h0 = monoNowUs();
  await sleep(holdSeconds * 1000);
  const heldS = (monoNowUs() - h0) / 1e6;
  const beats = open * heldS;
  const nodeHold = cpuSeconds(node.pid) - node1;
  const selfHold = selfCpuSeconds() - self1;
  const perBeat = (s: number) => (s * 1e6) / Math.max(1, beats);
  console.log(
    `heartbeat CPU (ping + pong): node ${perBeat(nodeHold).toFixed(1)} us, client ${perBeat(selfHold).toFixed(1)} us, both ${perBeat(nodeHold + selfHold).toFixed(1)} us (${open} connections, 1 s interval, ${heldS.toFixed(1)} s)`,
  );
  for (const c of conns) c.destroy();
  await node.stop();
}

await main();
