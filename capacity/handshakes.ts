/**
 * What a TLS handshake costs a node, measured: a plain reference node and a
 * TLS one (`serve --tls-cert/--tls-key`, the run's own throwaway CA, EC P-256)
 * in processes of their own, and lean devices from this process opening N
 * connections as fast as they go (at most 1,000 in flight) in four rounds:
 * plain; TLS with a full handshake each; TLS again keeping each device's
 * ticket; the same devices reconnecting, resumed. CPU comes from /proc for the
 * node and `process.cpuUsage()` for the client; memory is each end's RSS
 * growth over a held round, per device.
 *
 * `pushbench capacity --tls` feeds the node's figures to `plan`, whose herd
 * then pays for the handshakes it makes (capacity/plan.ts); bench/tls-cost.ts
 * prints both ends beside `openssl speed`.
 */
import { createSecureContext } from 'node:tls';
import { monoNowUs } from '../core/clock.js';
import { readProcessStats } from '../core/process-stats.js';
import { makeRunTls, type TlsKeyType } from '../core/tls-certs.js';
import {
  WsClientConnection,
  type WsClientSink,
  type WsConnectOptions,
} from '../loadgen/ws-client/connection.js';
import { signToken } from '../server/token.js';
import { startNodeProcess } from '../topology/supervisor.js';

/** One round's figures: per connect that opened. */
export interface HandshakeRound {
  label: string;
  open: number;
  failed: number;
  resumed: number;
  connectsPerSec: number;
  nodeUs: number;
  clientUs: number;
  /** RSS growth per held device, KB (1024 bytes). */
  nodeKb: number;
  clientKb: number;
}

/** The four rounds, in order: plain, full, first with tickets, resumed. */
export interface HandshakeCosts {
  devices: number;
  keyType: TlsKeyType;
  plain: HandshakeRound;
  full: HandshakeRound;
  firstWithTickets: HandshakeRound;
  resumed: HandshakeRound;
}

const IN_FLIGHT = 1000;
const SECRET = 'handshake-secret';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cpuSeconds(pid: number): number {
  return readProcessStats(pid)?.cpuSeconds ?? 0;
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Measures the four rounds with `devices` connections each (at most ~19,000: one process's files). */
export async function measureHandshakes(
  devices = 5000,
  keyType: TlsKeyType = 'ec-p256',
): Promise<HandshakeCosts> {
  const counts = { open: 0, failed: 0, resumed: 0 };
  const sink: WsClientSink = {
    onOpen: (c) => {
      counts.open++;
      if (c.tlsTiming?.resumed) counts.resumed++;
    },
    onText: () => {},
    onClose: (_c, info) => {
      if (!info.opened) counts.failed++;
    },
  };
  const tls = await makeRunTls(keyType);
  const base = {
    secret: SECRET,
    apiKey: 'handshake-key',
    heartbeatIntervalMs: 30_000,
    heartbeatTimeoutMs: 90_000,
  };
  let plainNode: Awaited<ReturnType<typeof startNodeProcess>> | undefined;
  let tlsNode: Awaited<ReturnType<typeof startNodeProcess>> | undefined;
  try {
    plainNode = await startNodeProcess({ ...base, nodeId: 'plain' });
    tlsNode = await startNodeProcess({
      ...base,
      nodeId: 'tls',
      extraArgs: ['--tls-cert', tls.server.certFile, '--tls-key', tls.server.keyFile],
    });
    await sleep(1000);
    const expiresAtSec = Math.floor(Date.now() / 1000) + 3600;
    const tokens = Array.from({ length: devices }, (_, i) =>
      signToken({ deviceId: `h${i}`, accountId: `a${i % 100}`, expiresAtSec }, SECRET),
    );
    const secureContext = createSecureContext({ ca: tls.caPem });
    const target = (node: { host: string; port: number }, i: number): WsConnectOptions => ({
      host: node.host,
      port: node.port,
      path: `/ws?token=${tokens[i]}&hello=1`,
      // Source addresses spread so ephemeral ports never run out.
      localAddress: `127.0.${1 + (i % 200)}.${1 + (((i / 200) | 0) % 250)}`,
    });

    const round = async (
      label: string,
      node: { pid: number },
      conns: WsClientConnection[],
      options: (i: number) => WsConnectOptions,
    ): Promise<HandshakeRound> => {
      counts.open = 0;
      counts.failed = 0;
      counts.resumed = 0;
      const node0 = cpuSeconds(node.pid);
      const self0 = selfCpuSeconds();
      const nodeRss0 = readProcessStats(node.pid)?.rssBytes ?? 0;
      const selfRss0 = process.memoryUsage().rss;
      const t0 = monoNowUs();
      let i = 0;
      await new Promise<void>((resolve) => {
        const tick = () => {
          let n = 0;
          while (i < conns.length && n < 200 && i - counts.open - counts.failed < IN_FLIGHT) {
            conns[i]!.connect(options(i));
            i++;
            n++;
          }
          if (counts.open + counts.failed >= conns.length) resolve();
          else setImmediate(tick);
        };
        tick();
      });
      const seconds = (monoNowUs() - t0) / 1e6;
      const opened = Math.max(1, counts.open);
      const nodeUs = ((cpuSeconds(node.pid) - node0) * 1e6) / opened;
      const clientUs = ((selfCpuSeconds() - self0) * 1e6) / opened;
      await sleep(500);
      const nodeKb = ((readProcessStats(node.pid)?.rssBytes ?? 0) - nodeRss0) / 1024 / opened;
      const clientKb = (process.memoryUsage().rss - selfRss0) / 1024 / opened;
      const result = {
        label,
        open: counts.open,
        failed: counts.failed,
        resumed: counts.resumed,
        connectsPerSec: counts.open / seconds,
        nodeUs,
        clientUs,
        nodeKb,
        clientKb,
      };
      for (const c of conns) c.close(1000);
      await sleep(1500);
      return result;
    };

    const fresh = () => Array.from({ length: devices }, (_, i) => new WsClientConnection(sink, i));
    const secure = tlsNode;
    const plainOne = plainNode;
    const plain = await round('ws:// (plain)', plainOne, fresh(), (i) => target(plainOne, i));
    const full = await round('wss://, full handshake', secure, fresh(), (i) => ({
      ...target(secure, i),
      tls: { secureContext, resume: false },
    }));
    const keeping = fresh();
    const withTickets = (i: number): WsConnectOptions => ({
      ...target(secure, i),
      tls: { secureContext, resume: true },
    });
    const firstWithTickets = await round(
      'wss://, first connect (keeps ticket)',
      secure,
      keeping,
      withTickets,
    );
    const resumed = await round('wss://, reconnect (resumed)', secure, keeping, withTickets);
    return { devices, keyType, plain, full, firstWithTickets, resumed };
  } finally {
    await Promise.allSettled([plainNode?.stop(), tlsNode?.stop()]);
    tls.remove();
  }
}
