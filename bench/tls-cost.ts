/**
 * What TLS costs a connect, at both ends: a plain reference node and a TLS one
 * (`serve --tls-cert/--tls-key`, EC P-256 certificate from a throwaway CA),
 * each its own process; the lean client here opens N devices as fast as it
 * goes (at most 1,000 in flight) in four rounds:
 *
 * 1. plain `ws://`;
 * 2. `wss://`, a full handshake each (resumption off);
 * 3. `wss://` again with resumption on, first connects (full; each device keeps its ticket);
 * 4. the same devices reconnecting (the resumed share is printed).
 *
 * CPU comes from /proc for the node and `process.cpuUsage()` here; memory per
 * device is each end's RSS growth over the held round (node from /proc, client
 * from `process.memoryUsage()`). Last, `openssl speed ecdsap256` on this box
 * for the signature and verification that a full handshake does once each.
 *
 *   npx tsx bench/tls-cost.ts [connections=5000]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { monoNowUs } from '../core/clock.js';
import { readProcessStats } from '../core/process-stats.js';
import { makeCa, makeServerCert } from '../core/tls-certs.js';
import {
  WsClientConnection,
  type WsClientSink,
  type WsConnectOptions,
} from '../loadgen/ws-client/connection.js';
import { startNodeProcess } from '../topology/supervisor.js';
import { processCpuSeconds, selfCpuSeconds, sleep } from './cpu.js';
import { BENCH_SECRET, deviceToken } from './lean-devices.js';

const total = Number(process.argv[2] ?? 5000);
const IN_FLIGHT = 1000;

interface Round {
  open: number;
  failed: number;
  resumed: number;
}

const round: Round = { open: 0, failed: 0, resumed: 0 };
const sink: WsClientSink = {
  onOpen: (c) => {
    round.open++;
    if (c.tlsTiming?.resumed) round.resumed++;
  },
  onText: () => {},
  onClose: (_c, info) => {
    if (!info.opened) round.failed++;
  },
};

/** Connects every device in `conns` with `options(i)`; prints and returns the round's figures. */
async function connectRound(
  label: string,
  node: { pid: number },
  conns: WsClientConnection[],
  options: (i: number) => WsConnectOptions,
): Promise<{ nodeUs: number; clientUs: number; nodeRssKb: number; clientRssKb: number }> {
  round.open = 0;
  round.failed = 0;
  round.resumed = 0;
  const node0 = processCpuSeconds(node.pid);
  const self0 = selfCpuSeconds();
  const nodeRss0 = readProcessStats(node.pid)?.rssBytes ?? 0;
  const selfRss0 = process.memoryUsage().rss;
  const t0 = monoNowUs();
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      let n = 0;
      while (i < conns.length && n < 200 && i - round.open - round.failed < IN_FLIGHT) {
        conns[i]!.connect(options(i));
        i++;
        n++;
      }
      if (round.open + round.failed >= conns.length) resolve();
      else setImmediate(tick);
    };
    tick();
  });
  const seconds = (monoNowUs() - t0) / 1e6;
  const per = (s: number) => (s * 1e6) / Math.max(1, round.open);
  const nodeUs = per(processCpuSeconds(node.pid) - node0);
  const clientUs = per(selfCpuSeconds() - self0);
  await sleep(500);
  const nodeRssKb =
    ((readProcessStats(node.pid)?.rssBytes ?? 0) - nodeRss0) / 1024 / Math.max(1, round.open);
  const clientRssKb = (process.memoryUsage().rss - selfRss0) / 1024 / Math.max(1, round.open);
  console.log(
    `${label.padEnd(34)} ${String(round.open).padStart(6)} ${String(round.failed).padStart(6)} ` +
      `${String(round.resumed).padStart(7)} ${(round.open / seconds).toFixed(0).padStart(8)} ` +
      `${nodeUs.toFixed(0).padStart(7)} ${clientUs.toFixed(0).padStart(7)} ${(nodeUs + clientUs).toFixed(0).padStart(6)}` +
      `   ${nodeRssKb.toFixed(2).padStart(6)} ${clientRssKb.toFixed(2).padStart(6)}`,
  );
  return { nodeUs, clientUs, nodeRssKb, clientRssKb };
}

function closeAll(conns: WsClientConnection[]): Promise<void> {
  for (const c of conns) c.close(1000);
  return sleep(1500);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pushbench-tls-cost-'));
  try {
    const ca = await makeCa(dir);
    const cert = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'] });
    const base = {
      secret: BENCH_SECRET,
      apiKey: 'bench-key',
      heartbeatIntervalMs: 30_000,
      heartbeatTimeoutMs: 90_000,
    };
    const plain = await startNodeProcess({ ...base, nodeId: 'plain' });
    const secure = await startNodeProcess({
      ...base,
      nodeId: 'tls',
      extraArgs: ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile],
    });
    await sleep(1000);
    const tokens = Array.from({ length: total }, (_, i) => deviceToken(i));
    const secureContext = createSecureContext({ ca: ca.cert });
    const target = (node: { host: string; port: number }, i: number) => ({
      host: node.host,
      port: node.port,
      path: `/ws?token=${tokens[i]}&hello=1`,
      localAddress: `127.0.${1 + (i % 200)}.${1 + (((i / 200) | 0) % 250)}`,
    });
    const fresh = () => Array.from({ length: total }, (_, i) => new WsClientConnection(sink, i));

    console.log(
      `TLS vs plain: ${total} devices per round, node and client on the same 2 cores; EC P-256, TLS 1.3\n`,
    );
    console.log(
      'round                                open failed resumed  conns/s  node us client us  both   node KB client KB (per device, held)',
    );
    let conns = fresh();
    const p = await connectRound('ws:// (plain)', plain, conns, (i) => target(plain, i));
    await closeAll(conns);
    conns = fresh();
    const full = await connectRound('wss://, full handshake', secure, conns, (i) => ({
      ...target(secure, i),
      tls: { secureContext, resume: false },
    }));
    await closeAll(conns);
    conns = fresh();
    await connectRound('wss://, first connect (keeps ticket)', secure, conns, (i) => ({
      ...target(secure, i),
      tls: { secureContext, resume: true },
    }));
    await closeAll(conns);
    const resumed = await connectRound('wss://, reconnect (resumed)', secure, conns, (i) => ({
      ...target(secure, i),
      tls: { secureContext, resume: true },
    }));
    await closeAll(conns);

    console.log('');
    console.log(
      `TLS over plain, CPU per connect: full handshake +${(full.nodeUs - p.nodeUs).toFixed(0)} us node, ` +
        `+${(full.clientUs - p.clientUs).toFixed(0)} us client; resumed +${(resumed.nodeUs - p.nodeUs).toFixed(0)} us node, ` +
        `+${(resumed.clientUs - p.clientUs).toFixed(0)} us client`,
    );
    try {
      const out = execFileSync('openssl', ['speed', '-seconds', '2', 'ecdsap256'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const row = /256 bits ecdsa \(nistp256\)\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)/.exec(
        out,
      );
      if (row) {
        // The per-operation columns round to 0.0000s; the rates do not.
        const us = (perSecond: string) => (1e6 / Number(perSecond)).toFixed(1);
        console.log(
          `openssl speed ecdsap256 on this box: sign ${us(row[3]!)} us, verify ${us(row[4]!)} us ` +
            '(a full handshake signs once at the server and verifies at the client, plus ECDHE at each end)',
        );
      }
    } catch {
      console.log('openssl speed: not available');
    }
    await plain.stop();
    await secure.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
