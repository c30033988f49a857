import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Rng } from '../../core/rng.js';
import {
  type NodeAddress,
  type NodeBackends,
  type PushNode,
  startNode,
} from '../../server/node.js';
import { signToken } from '../../server/token.js';

const SECRET = 'fuzz-secret';
const KEY = 'fuzz-key';
const rng = new Rng(20261122);

let node: PushNode;
let addr: NodeAddress;
let backends: NodeBackends;

beforeAll(async () => {
  ({
    node,
    address: addr,
    backends,
  } = await startNode({
    secret: SECRET,
    apiKey: KEY,
    heartbeatIntervalMs: 60_000,
    heartbeatTimeoutMs: 120_000,
    d2dRatePerSec: 1000,
    pushRatePerSec: 10_000,
  }));
});

afterAll(async () => {
  await node.stop();
  await backends.registry.close();
  await backends.broker.close();
});

const token = (id: string) =>
  signToken({ deviceId: id, accountId: 'fuzz', expiresAtSec: Date.now() / 1000 + 3600 }, SECRET);

const valid: unknown[] = [
  { type: 'ack', id: 'm1' },
  { type: 'd2d', to: 'f1', id: 'x', payload: { a: [1, 2, { b: null }] } },
  { type: 'subscribe', room: 'r', dump: true, ref: 'q' },
  { type: 'subscribe', room: 'r', since: { offset: 3, epoch: 'e' } },
  { type: 'unsubscribe', room: 'r' },
  { type: 'devices', ref: 'z' },
  { type: 'presence', subscribe: true },
];

function randomString(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(0x2fff));
  return s;
}

function randomJson(depth = 0): unknown {
  switch (rng.int(depth > 3 ? 4 : 7)) {
    case 0:
      return rng.int(1e9) - 5e8;
    case 1:
      return randomString(rng.int(20));
    case 2:
      return null;
    case 3:
      return rng.next() < 0.5;
    case 4:
      return Array.from({ length: rng.int(4) }, () => randomJson(depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const keys = [
        'type',
        'id',
        'to',
        'room',
        'payload',
        'since',
        'dump',
        'ref',
        'subscribe',
        'offset',
        'epoch',
      ];
      for (let i = rng.int(5); i > 0; i--) o[keys[rng.int(keys.length)]!] = randomJson(depth + 1);
      return o;
    }
  }
}

/** A valid frame with a few characters flipped, dropped or duplicated. */
function mutate(text: string): string {
  const chars = [...text];
  for (let i = 1 + rng.int(3); i > 0; i--) {
    const at = rng.int(chars.length);
    const op = rng.int(3);
    if (op === 0) chars[at] = String.fromCharCode(32 + rng.int(95));
    else if (op === 1) chars.splice(at, 1);
    else chars.splice(at, 0, chars[at] ?? '{');
  }
  return chars.join('');
}

function garbageFrame(): string | Buffer {
  const kind = rng.int(7);
  if (kind === 0) return mutate(JSON.stringify(valid[rng.int(valid.length)]));
  if (kind === 1) return JSON.stringify(randomJson());
  if (kind === 2) return randomString(rng.int(200));
  if (kind === 3) return Buffer.from(Array.from({ length: rng.int(64) }, () => rng.int(256)));
  if (kind === 4)
    return JSON.stringify({ type: 'd2d', to: 'f1', id: 'big', payload: 'x'.repeat(20_000) });
  if (kind === 5) return '['.repeat(5000) + ']'.repeat(5000);
  return JSON.stringify(valid[rng.int(valid.length)]);
}

async function openDevice(id: string): Promise<WebSocket> {
  const ws = new WebSocket(`${addr.wsUrl}?token=${token(id)}`);
  ws.on('error', () => {});
  await once(ws, 'open');
  return ws;
}

describe('a node fed garbage', () => {
  it('survives thousands of random and mutated device frames, closing only the offenders', async () => {
    let sockets = await Promise.all(Array.from({ length: 8 }, (_, i) => openDevice(`f${i}`)));
    let sent = 0;
    let closes = 0;
    while (sent < 3000) {
      for (let i = 0; i < sockets.length; i++) {
        let ws = sockets[i]!;
        if (ws.readyState !== WebSocket.OPEN) {
          closes++;
          ws = await openDevice(`f${i}`);
          sockets[i] = ws;
        }
        ws.send(garbageFrame());
        sent++;
      }
      await new Promise((r) => setImmediate(r));
    }
    expect(closes).toBeGreaterThan(0);
    for (const ws of sockets) ws.terminate();
    sockets = [];
    expect(node.metrics.total('pushbench_bad_frames_total')).toBeGreaterThan(0);
  });

  it('survives raw garbage on the socket before and after the handshake', async () => {
    const one = async (i: number) => {
      const sock = connect(addr.port, addr.host);
      sock.on('error', () => {});
      await once(sock, 'connect');
      if (i % 2 === 1) {
        sock.write(
          `GET /ws?token=${token(`raw${i}`)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
      }
      sock.write(Buffer.from(Array.from({ length: 1 + rng.int(300) }, () => rng.int(256))));
      sock.end();
      await Promise.race([once(sock, 'close'), new Promise((r) => setTimeout(r, 100))]);
      sock.destroy();
    };
    // 200 connections, 20 at a time.
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 20 }, (_, k) => one(batch * 20 + k)));
    }
  });

  it('answers thousands of random HTTP requests with documented statuses, never 500', async () => {
    const paths = [
      '/v1/push/f1',
      '/v1/push',
      '/v1/queue',
      '/v1/rooms/r/messages',
      '/v1/accounts/fuzz/devices',
      '/v1/admin/nope',
      '/healthz',
      '/v1/push/%E0%A4%A',
      '/metrics.json',
      '/v1/rooms/%00/messages',
    ];
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
    const seen = new Map<number, number>();
    for (let i = 0; i < 1500; i++) {
      const kind = rng.int(5);
      const body =
        kind === 0
          ? mutate(
              JSON.stringify({
                payload: randomJson(),
                id: 'm',
                devices: ['f1', 'f2'],
                device: 'f1',
              }),
            )
          : kind === 1
            ? JSON.stringify(randomJson())
            : kind === 2
              ? randomString(rng.int(300))
              : kind === 3
                ? JSON.stringify({ payload: 'x'.repeat(70_000) })
                : JSON.stringify({ payload: randomJson(), device: 'f1', devices: [randomJson()] });
      const method = methods[rng.int(methods.length)]!;
      const res = await fetch(`${addr.httpUrl}${paths[rng.int(paths.length)]!}`, {
        method,
        headers: {
          authorization: rng.next() < 0.9 ? `Bearer ${KEY}` : 'Bearer wrong',
          'content-type': 'application/json',
        },
        body: method === 'GET' ? undefined : body,
      });
      await res.arrayBuffer();
      seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    }
    const documented = new Set([200, 202, 400, 401, 404, 405, 413, 429, 502, 503, 504]);
    expect([...seen.keys()].filter((s) => !documented.has(s))).toEqual([]);
    expect(seen.get(400)).toBeGreaterThan(0);
  });

  it('still serves a normal device afterwards', async () => {
    const ws = await openDevice('normal');
    const got = once(ws, 'message');
    const res = await fetch(`${addr.httpUrl}/v1/push/normal`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ payload: 'still alive', id: 'ok-1' }),
    });
    expect(res.status).toBe(200);
    const [data] = await got;
    expect(JSON.parse(String(data))).toEqual({ type: 'push', id: 'ok-1', payload: 'still alive' });
    ws.close();
  });
});
