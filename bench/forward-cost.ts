/**
 * What a push forwarded between nodes costs, over a direct peer link and over
 * the broker, side by side in one run: a hub and two reference nodes (real
 * processes, as a run starts them), N lean devices on node B, and pushes at R/s
 * (open model, each scheduled on a fixed grid) to node A's HTTP API, so every
 * one is looked up in the registry and forwarded to B. Node B is started with
 * and without `--no-peer-links` in alternating rounds. Prints CPU per push of
 * A, B and the hub (from /proc), and push latency from its scheduled time.
 *
 *   npx tsx bench/forward-cost.ts [devices=1000] [rate=1000] [seconds=10] [rounds=2]
 */
import { Agent, request } from 'node:http';
import type { WsClientConnection, WsClientSink } from '../loadgen/ws-client/connection.js';
import { type NodeProcess, startNodeProcess } from '../topology/supervisor.js';
import { processCpuSeconds, sleep } from './cpu.js';
import { BENCH_SECRET, connectDevice, deviceToken } from './lean-devices.js';

const devices = Number(process.argv[2] ?? 1000);
const rate = Number(process.argv[3] ?? 1000);
const seconds = Number(process.argv[4] ?? 10);
const rounds = Number(process.argv[5] ?? 2);
const API_KEY = 'bench-key';

interface Round {
  mode: 'peer link' | 'broker';
  sent: number;
  ok: number;
  delivered: number;
  aUs: number;
  bUs: number;
  hubUs: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: number[], q: number): number {
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function round(mode: Round['mode']): Promise<Round> {
  const common = {
    secret: BENCH_SECRET,
    apiKey: API_KEY,
    heartbeatIntervalMs: 30_000,
    heartbeatTimeoutMs: 90_000,
  };
  const hub = await startNodeProcess({ nodeId: 'hub', ...common });
  const extra = mode === 'broker' ? { extraArgs: ['--no-peer-links'] } : {};
  const nodes: NodeProcess[] = [hub];
  try {
    const a = await startNodeProcess({ nodeId: 'a', join: hub.httpUrl, ...common, ...extra });
    nodes.push(a);
    const b = await startNodeProcess({ nodeId: 'b', join: hub.httpUrl, ...common, ...extra });
    nodes.push(b);
    // Scheduled send time (ms, performance.now) of each push, by message id.
    const due = new Map<string, number>();
    const latencies: number[] = [];
    const sink: WsClientSink = {
      onOpen: () => {},
      onText: (_c, text) => {
        const m = /"id":"(p\d+)"/.exec(text);
        const at = m ? due.get(m[1]!) : undefined;
        if (at !== undefined) {
          latencies.push(performance.now() - at);
          due.delete(m![1]!);
        }
      },
      onClose: () => {},
    };
    const conns: WsClientConnection[] = [];
    const bAddress = {
      host: '127.0.0.1',
      port: new URL(b.wsUrl).port ? Number(new URL(b.wsUrl).port) : 80,
    };
    for (let i = 0; i < devices; i++) conns.push(connectDevice(sink, i, bAddress, deviceToken(i)));
    await sleep(3000);
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const url = new URL(a.httpUrl);
    let ok = 0;
    const push = (n: number) => {
      const id = `p${n}`;
      const body = JSON.stringify({ id, payload: { n } });
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: 'POST',
          path: `/v1/push/d${n % devices}`,
          headers: {
            authorization: `Bearer ${API_KEY}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          if (res.statusCode === 200) ok++;
          res.resume();
        },
      );
      req.on('error', () => {});
      req.end(body);
    };
    const cpu0 = nodes.map((n) => processCpuSeconds(n.pid));
    const t0 = performance.now();
    const total = Math.round(rate * seconds);
    let sent = 0;
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        // Every push whose time has come, stamped with its own time, not when it went.
        while (sent < total && t0 + (sent * 1000) / rate <= now) {
          due.set(`p${sent}`, t0 + (sent * 1000) / rate);
          push(sent++);
        }
        if (sent >= total) {
          clearInterval(tick);
          resolve();
        }
      }, 2);
    });
    await sleep(1500);
    const cpu1 = nodes.map((n) => processCpuSeconds(n.pid));
    const us = (i: number) => ((cpu1[i]! - cpu0[i]!) * 1e6) / sent;
    latencies.sort((x, y) => x - y);
    for (const c of conns) c.close(1000, 'bye');
    agent.destroy();
    return {
      mode,
      sent,
      ok,
      delivered: latencies.length,
      aUs: us(1),
      bUs: us(2),
      hubUs: us(0),
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
    };
  } finally {
    for (const n of nodes.reverse()) await n.stop().catch(() => {});
  }
}

console.log(
  `A push forwarded from node A to the holder B: ${devices} devices on B, ${rate} pushes/s to A for ${seconds} s, ${rounds} round(s) each way, alternating\n`,
);
console.log(
  'round       sent      ok  delivered   A us/push   B us/push  hub us/push  all us/push   p50 ms   p99 ms',
);
const results: Round[] = [];
for (let r = 0; r < rounds; r++) {
  for (const mode of ['peer link', 'broker'] as const) {
    const x = await round(mode);
    results.push(x);
    const all = x.aUs + x.bUs + x.hubUs;
    console.log(
      `${x.mode.padEnd(10)}${String(x.sent).padStart(6)}${String(x.ok).padStart(8)}${String(x.delivered).padStart(11)}` +
        `${x.aUs.toFixed(1).padStart(12)}${x.bUs.toFixed(1).padStart(12)}${x.hubUs.toFixed(1).padStart(13)}${all.toFixed(1).padStart(13)}` +
        `${x.p50Ms.toFixed(2).padStart(9)}${x.p99Ms.toFixed(2).padStart(9)}`,
    );
  }
}
const mean = (mode: Round['mode']) => {
  const xs = results.filter((x) => x.mode === mode);
  return xs.reduce((s, x) => s + x.aUs + x.bUs + x.hubUs, 0) / xs.length;
};
console.log(
  `\npeer link / broker, CPU per forwarded push (A + B + hub): ${(mean('peer link') / mean('broker')).toFixed(2)}`,
);
