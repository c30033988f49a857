/**
 * A node serving over TLS (`--tls-cert/--tls-key`): the lean client's upgrade,
 * hello and pushes over `wss://`, the API over `https://`, and whether a
 * device's session resumes on another node, with the region's ticket keys
 * shared and without: the question after a node kill.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CertFiles, makeCa, makeServerCert } from '../../core/tls-certs.js';
import { WsClientConnection } from '../../loadgen/ws-client/connection.js';
import { type NodeTls, startNode } from '../../server/node.js';
import { signToken } from '../../server/token.js';
import { TlsRecordingSink } from '../helpers/tls-sink.js';

const SECRET = 'tls-secret';
const KEY = 'tls-key';

let dir: string;
let ca: CertFiles;
let nodeTls: NodeTls;
let sharedTickets: NodeTls;
let trusting: tls.SecureContext;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pushbench-node-tls-'));
  ca = await makeCa(dir);
  const cert = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'] });
  nodeTls = { certFile: cert.certFile, keyFile: cert.keyFile };
  const tickets = join(dir, 'tickets');
  writeFileSync(tickets, randomBytes(48), { mode: 0o600 });
  sharedTickets = { ...nodeTls, ticketKeysFile: tickets };
  trusting = tls.createSecureContext({ ca: ca.cert });
}, 30_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function tlsNode(nodeId: string, t: NodeTls, headTimeoutMs = 10_000) {
  const started = await startNode({ secret: SECRET, apiKey: KEY, nodeId, tls: t, headTimeoutMs });
  return {
    ...started,
    port: Number(new URL(started.address.wsUrl).port),
    stop: async () => {
      await started.node.stop();
      await started.backends.registry.close();
      await started.backends.broker.close();
    },
  };
}

function token(deviceId: string): string {
  return signToken({ deviceId, accountId: 'acme', expiresAtSec: Date.now() / 1000 + 600 }, SECRET);
}

/** Opens one device over wss, waits for its hello, returns its TLS timing. */
async function open(conn: WsClientConnection, sink: TlsRecordingSink, port: number, id: string) {
  conn.connect({
    host: '127.0.0.1',
    port,
    path: `/ws?token=${token(id)}&hello=1`,
    tls: { secureContext: trusting, resume: true },
  });
  const opened = await sink.next('open');
  const hello = JSON.parse((await sink.next('text')).text) as { type: string };
  expect(hello.type).toBe('hello');
  return opened.timing;
}

function post(port: number, path: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        ca: ca.cert,
        servername: 'localhost',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('a node over TLS', () => {
  it('serves wss:// devices and the https:// API on one port', async () => {
    const n = await tlsNode('tls-1', nodeTls);
    try {
      expect(n.address.wsUrl).toMatch(/^wss:\/\//);
      expect(n.address.httpUrl).toMatch(/^https:\/\//);
      const sink = new TlsRecordingSink();
      const conn = new WsClientConnection(sink, 1);
      const timing = await open(conn, sink, n.port, 'd1');
      expect(timing?.resumed).toBe(false);
      expect(await post(n.port, '/v1/push/d1', { payload: { n: 1 }, id: 'p1' })).toBe(200);
      const push = JSON.parse((await sink.next('text')).text) as { id: string };
      expect(push.id).toBe('p1');
      conn.close(1000);
      await sink.next('close');
    } finally {
      await n.stop();
    }
  });

  for (const [what, t, resumesElsewhere] of [
    ['with the ticket keys shared', () => sharedTickets, true],
    ['each with its own ticket keys', () => nodeTls, false],
  ] as const) {
    it(`two nodes ${what}: a device that moves from one to the other ${resumesElsewhere ? 'resumes' : 'makes a full handshake'}`, async () => {
      const a = await tlsNode('tls-a', t());
      const b = await tlsNode('tls-b', t());
      try {
        const sink = new TlsRecordingSink();
        const conn = new WsClientConnection(sink, 2);
        await open(conn, sink, a.port, 'mover');
        conn.close(1000);
        await sink.next('close');
        // On the node it came from, the session always resumes.
        expect((await open(conn, sink, a.port, 'mover'))?.resumed).toBe(true);
        conn.close(1000);
        await sink.next('close');
        expect((await open(conn, sink, b.port, 'mover'))?.resumed).toBe(resumesElsewhere);
        conn.close(1000);
        await sink.next('close');
      } finally {
        await a.stop();
        await b.stop();
      }
    });
  }
});

describe('a node over TLS and plain on one port (--tls-and-plain)', () => {
  it('takes TLS devices, resumes their sessions, and answers plain HTTP and ws:// on the same port', async () => {
    const n = await tlsNode('both', { ...sharedTickets, plainToo: true });
    try {
      // It names its plain URLs: the harness's API calls stay plain.
      expect(n.address.httpUrl).toMatch(/^http:\/\//);
      const sink = new TlsRecordingSink();
      const conn = new WsClientConnection(sink, 7);
      expect((await open(conn, sink, n.port, 'both-1'))?.resumed).toBe(false);
      conn.close(1000);
      await sink.next('close');
      expect((await open(conn, sink, n.port, 'both-1'))?.resumed).toBe(true);
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: n.port,
            path: '/v1/push/both-1',
            method: 'POST',
            headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ payload: 1, id: 'plain-api' }));
      });
      expect(status).toBe(200);
      expect(JSON.parse((await sink.next('text')).text)).toMatchObject({ id: 'plain-api' });
      const plainSink = new TlsRecordingSink();
      const plain = new WsClientConnection(plainSink, 8);
      plain.connect({
        host: '127.0.0.1',
        port: n.port,
        path: `/ws?token=${token('plain-1')}&hello=1`,
      });
      expect((await plainSink.next('open')).timing).toBeUndefined();
      plain.close(1000);
      conn.close(1000);
      await Promise.all([plainSink.next('close'), sink.next('close')]);
    } finally {
      await n.stop();
    }
  });

  for (const plainToo of [true, false]) {
    it(`closes a socket whose TLS handshake stalls after its first bytes, at the head deadline (${plainToo ? 'TLS and plain' : 'TLS only'})`, async () => {
      const n = await tlsNode('stall', { ...nodeTls, plainToo }, 300);
      try {
        const socket = net.connect(n.port, '127.0.0.1');
        socket.on('error', () => {});
        await new Promise((r) => socket.once('connect', r));
        // A TLS record header and nothing more.
        socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40]));
        const started = Date.now();
        await new Promise((r) => socket.once('close', r));
        expect(Date.now() - started).toBeLessThan(3000);
      } finally {
        await n.stop();
      }
    });
  }

  it('a TLS-only port closes a socket that speaks plain HTTP', async () => {
    const n = await tlsNode('only', nodeTls);
    try {
      const socket = net.connect(n.port, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((r) => socket.once('connect', r));
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      let answer = '';
      socket.on('data', (d) => {
        answer += d;
      });
      await new Promise((r) => socket.once('close', r));
      expect(answer).toBe('');
    } finally {
      await n.stop();
    }
  });
});
