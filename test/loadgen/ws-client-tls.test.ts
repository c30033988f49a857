/**
 * The lean client over TLS (`wss://`) against a `node:tls` + `ws` server with
 * certificates made by the run's own CA helper: the upgrade and frames over
 * TLS, session resumption really used (the server sees `isSessionReused()`),
 * the TCP/TLS split, and each certificate failure as its own reason.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { monoNowUs } from '../../core/clock.js';
import { type CertFiles, makeCa, makeServerCert } from '../../core/tls-certs.js';
import { WsClientConnection, type WsConnectOptions } from '../../loadgen/ws-client/connection.js';
import { TlsRecordingSink } from '../helpers/tls-sink.js';

let dir: string;
let ca: CertFiles;
let good: CertFiles;
let expired: CertFiles;
let otherCa: CertFiles;
let trusting: tls.SecureContext;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pushbench-tls-test-'));
  ca = await makeCa(dir);
  good = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'] });
  expired = await makeServerCert(dir, ca, {
    names: ['localhost', '127.0.0.1'],
    notBeforeDays: -10,
    days: 2,
    basename: 'expired',
  });
  otherCa = await makeCa(join(dir, 'other'), 'someone else');
  trusting = tls.createSecureContext({ ca: ca.cert });
}, 30_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An echoing `ws` server on HTTPS; records whether each TLS session was resumed. */
async function startWssServer(
  cert: CertFiles,
): Promise<{ port: number; reused: boolean[]; server: HttpsServer }> {
  const reused: boolean[] = [];
  const server = createHttpsServer({ cert: cert.cert, key: cert.key });
  server.on('secureConnection', (socket: tls.TLSSocket) => reused.push(socket.isSessionReused()));
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(String(data))));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, reused, server };
}

function options(
  port: number,
  tlsOptions: Partial<WsConnectOptions['tls']> = {},
): WsConnectOptions {
  return {
    host: '127.0.0.1',
    port,
    path: '/ws',
    tls: { secureContext: trusting, resume: true, ...tlsOptions },
  };
}

describe('the lean client over TLS', () => {
  it('upgrades, exchanges frames and closes over TLS, and splits the connect into TCP and TLS', async () => {
    const { port } = await startWssServer(good);
    const sink = new TlsRecordingSink();
    const conn = new WsClientConnection(sink, 1);
    conn.connect(options(port));
    const open = await sink.next('open');
    expect(open.timing).toMatchObject({ resumed: false });
    expect(open.timing!.tcpUs).toBeGreaterThan(0);
    expect(open.timing!.tlsUs).toBeGreaterThan(0);
    expect(open.timing!.upgradeUs).toBeGreaterThan(0);
    conn.sendText('hello over tls');
    expect((await sink.next('text')).text).toBe('hello over tls');
    conn.close(1000, 'done');
    expect((await sink.next('close')).info).toMatchObject({ opened: true, code: 1000 });
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`${version}: a reconnect offers the device's session and the server resumes it`, async () => {
      const { port, reused } = await startWssServer(good);
      const sink = new TlsRecordingSink();
      const conn = new WsClientConnection(sink, 2);
      const opts = options(port, { minVersion: version, maxVersion: version });
      conn.connect(opts);
      await sink.next('open');
      // TLS 1.3 tickets come after the handshake: echo once so they have arrived.
      conn.sendText('x');
      await sink.next('text');
      expect(conn.tlsSession).toBeInstanceOf(Buffer);
      conn.close(1000);
      await sink.next('close');
      conn.connect(opts);
      const again = await sink.next('open');
      expect(again.timing?.resumed).toBe(true);
      expect(reused).toEqual([false, true]);
      conn.close(1000);
      await sink.next('close');
    });
  }

  it('with resumption off, every connect is a full handshake', async () => {
    const { port, reused } = await startWssServer(good);
    const sink = new TlsRecordingSink();
    const conn = new WsClientConnection(sink, 3);
    const opts = options(port, { resume: false });
    for (let i = 0; i < 2; i++) {
      conn.connect(opts);
      expect((await sink.next('open')).timing?.resumed).toBe(false);
      conn.sendText('x');
      await sink.next('text');
      conn.close(1000);
      await sink.next('close');
    }
    expect(conn.tlsSession).toBeUndefined();
    expect(reused).toEqual([false, false]);
  });

  const failures: [string, () => Promise<WsConnectOptions>, string][] = [
    [
      'a certificate from a CA the device does not trust',
      async () =>
        options((await startWssServer(good)).port, {
          secureContext: tls.createSecureContext({ ca: otherCa.cert }),
        }),
      'tls_untrusted',
    ],
    [
      'an expired certificate',
      async () => options((await startWssServer(expired)).port),
      'tls_expired',
    ],
    [
      'a certificate for another name than the SNI asked for',
      async () => options((await startWssServer(good)).port, { servername: 'push.example.com' }),
      'tls_hostname',
    ],
    [
      'plain HTTP where TLS was expected',
      async () => {
        const held: net.Socket[] = [];
        const server = net.createServer((s) => {
          s.on('error', () => {});
          held.push(s);
          s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
        });
        server.listen(0, '127.0.0.1');
        await once(server, 'listening');
        cleanups.push(() => {
          for (const s of held) s.destroy();
          return new Promise<void>((r) => server.close(() => r()));
        });
        return options((server.address() as net.AddressInfo).port);
      },
      'tls_error',
    ],
  ];
  for (const [what, setup, reason] of failures) {
    it(`${what}: a failed connect with reason ${reason}`, async () => {
      const sink = new TlsRecordingSink();
      const conn = new WsClientConnection(sink, 4);
      conn.connect(await setup());
      const { info } = await sink.next('close');
      expect(info, JSON.stringify(info)).toMatchObject({ opened: false, failure: reason });
      expect(sink.count('open')).toBe(0);
    });
  }

  it('a handshake that stalls after TCP connects: tls_timeout from the sweep', async () => {
    const held: net.Socket[] = [];
    const server = net.createServer((s) => {
      s.on('error', () => {});
      held.push(s);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => {
      for (const s of held) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    const sink = new TlsRecordingSink();
    const conn = new WsClientConnection(sink, 5);
    conn.connect(options((server.address() as net.AddressInfo).port));
    await new Promise((r) => setTimeout(r, 200));
    // The owner's sweep: 100 ms connect timeout, long past.
    expect(conn.expireIfStale(monoNowUs(), 100_000, 1_000_000)).toBe(true);
    const { info } = await sink.next('close');
    expect(info).toMatchObject({ opened: false, failure: 'tls_timeout' });
  });
});
