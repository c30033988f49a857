import { once } from 'node:events';
import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type NodeAddress, type NodeBackends, PushNode } from '../../server/node.js';
import { signToken } from '../../server/token.js';
import { startTestNode, TEST_API_KEY, TEST_SECRET } from '../helpers/node.js';

const SECRET = TEST_SECRET;
const KEY = TEST_API_KEY;

let node: PushNode;
let addr: NodeAddress;
let backends: NodeBackends;

async function boot(options: Partial<PushNode['options']> = {}): Promise<void> {
  const started = await startTestNode(options);
  node = started.node;
  addr = started.address;
  backends = started.backends;
}

beforeEach(async () => {
  await boot();
});

afterEach(async () => {
  await node.stop();
  await backends.registry.close();
  await backends.broker.close();
});

function token(deviceId: string, expiresAtSec = Date.now() / 1000 + 3600): string {
  return signToken({ deviceId, accountId: 'acct', expiresAtSec }, SECRET);
}

async function device(deviceId: string): Promise<WebSocket> {
  const ws = new WebSocket(`${addr.wsUrl}?token=${token(deviceId)}`);
  await once(ws, 'open');
  return ws;
}

async function push(
  deviceId: string,
  body: string | object,
  headers: Record<string, string> = { authorization: `Bearer ${KEY}` },
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${addr.httpUrl}/v1/push/${deviceId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function nextMessage(ws: WebSocket): Promise<Record<string, unknown>> {
  return once(ws, 'message').then(([data]) => JSON.parse(String(data)) as Record<string, unknown>);
}

function closeOf(ws: WebSocket): Promise<number> {
  return once(ws, 'close').then(([code]) => code as number);
}

describe('device upgrade', () => {
  it('accepts a valid token and refuses missing, forged and expired ones with 401', async () => {
    const ok = await device('d1');
    expect(ok.readyState).toBe(WebSocket.OPEN);
    ok.close();
    for (const bad of [
      '',
      'garbage',
      signToken({ deviceId: 'd1', accountId: 'a', expiresAtSec: 9e9 }, 'wrong'),
      token('d1', 1),
    ]) {
      const ws = new WebSocket(`${addr.wsUrl}?token=${bad}`);
      ws.on('error', () => {});
      const [, res] = (await once(ws, 'unexpected-response')) as [
        unknown,
        { statusCode: number; destroy(): void },
      ];
      expect(res.statusCode).toBe(401);
      res.destroy();
    }
    expect(node.metrics.total('pushbench_upgrades_refused_total')).toBe(4);
  });
});

describe('direct push API', () => {
  it('delivers a push frame to the device and answers 200 with the id', async () => {
    const ws = await device('d1');
    const got = nextMessage(ws);
    const res = await push('d1', { payload: { hello: 'world' }, id: 'm-1' });
    expect(res).toEqual({ status: 200, json: { status: 'delivered', id: 'm-1' } });
    expect(await got).toEqual({ type: 'push', id: 'm-1', payload: { hello: 'world' } });
    ws.close();
  });

  it('generates an id when none is given', async () => {
    const ws = await device('d1');
    const got = nextMessage(ws);
    const res = await push('d1', { payload: 1 });
    expect(res.status).toBe(200);
    expect(typeof res.json.id).toBe('string');
    expect((await got).id).toBe(res.json.id);
    ws.close();
  });

  it('answers 404 for a device that is not connected', async () => {
    expect(await push('nobody', { payload: 1 })).toMatchObject({
      status: 404,
      json: { status: 'not_connected' },
    });
  });

  it('answers 400 for malformed JSON, a non-object and a missing payload', async () => {
    expect((await push('d1', '{not json')).json).toEqual({ error: 'malformed_json' });
    expect((await push('d1', '[1,2]')).status).toBe(400);
    expect(await push('d1', { id: 'x' })).toMatchObject({
      status: 400,
      json: { error: 'missing_payload' },
    });
    expect((await push('d1', { payload: 1, id: 42 })).status).toBe(400);
  });

  it('answers 401 without the right bearer key', async () => {
    expect((await push('d1', { payload: 1 }, {})).status).toBe(401);
    expect((await push('d1', { payload: 1 }, { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await push('d1', { payload: 1 }, { authorization: KEY })).status).toBe(401);
  });

  it('answers 413 over the body size cap', async () => {
    const res = await push('d1', { payload: 'x'.repeat(70 * 1024) });
    expect(res).toMatchObject({ status: 413, json: { error: 'body_too_large' } });
  });

  it('serves /healthz, Prometheus /metrics and /metrics.json, and 404/405 elsewhere', async () => {
    expect((await fetch(`${addr.httpUrl}/healthz`)).status).toBe(200);
    const metrics = (await (await fetch(`${addr.httpUrl}/metrics.json`)).json()) as Record<
      string,
      unknown
    >;
    expect(metrics).toMatchObject({ nodeId: 'node-1', connections: 0 });
    const prom = await (await fetch(`${addr.httpUrl}/metrics`)).text();
    expect(prom).toMatch(/^# HELP pushbench_connections /m);
    expect(prom).toMatch(/^# TYPE pushbench_d2d_seconds histogram$/m);
    expect(prom).toMatch(/^pushbench_connections\{node="node-1"\} 0$/m);
    expect((await fetch(`${addr.httpUrl}/nowhere`)).status).toBe(404);
    expect((await fetch(`${addr.httpUrl}/v1/push/d1`)).status).toBe(401);
    const authed = { headers: { authorization: `Bearer ${KEY}` } };
    expect((await fetch(`${addr.httpUrl}/v1/push/d1`, authed)).status).toBe(405);
  });
});

describe('bad device frames', () => {
  it('closes a device that sends non-protocol text with 1008 and keeps serving the others', async () => {
    const bad = await device('bad');
    const good = await device('good');
    const closed = closeOf(bad);
    bad.send('this is not json');
    expect(await closed).toBe(1008);
    const got = nextMessage(good);
    expect((await push('good', { payload: 'still here' })).status).toBe(200);
    expect((await got).payload).toBe('still here');
    expect(node.metrics.total('pushbench_bad_frames_total')).toBe(1);
    good.close();
  });

  it('answers an unknown frame type with an error frame and keeps the connection; closes 1008 without a type, 1003 for binary', async () => {
    const a = await device('a');
    const reply = nextMessage(a);
    a.send(JSON.stringify({ type: 'launch-missiles', ref: 'r1' }));
    expect(await reply).toMatchObject({ type: 'error', code: 'unknown_type', ref: 'r1' });
    expect(a.readyState).toBe(WebSocket.OPEN);
    const closedA = closeOf(a);
    a.send(JSON.stringify({ kind: 'no type' }));
    expect(await closedA).toBe(1008);
    const b = await device('b');
    const closedB = closeOf(b);
    b.send(Buffer.from([1, 2, 3]));
    expect(await closedB).toBe(1003);
  });

  it('answers an unmasked client frame with close code 1002 and keeps running', async () => {
    // A raw socket speaks the handshake, then sends an unmasked text frame.
    const sock = connect(addr.port, addr.host);
    await once(sock, 'connect');
    sock.write(
      `GET /ws?token=${token('raw')} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
    });
    await new Promise<void>((resolve) => {
      const check = () => (buf.includes('\r\n\r\n') ? resolve() : setTimeout(check, 5));
      check();
    });
    const headerEnd = buf.indexOf('\r\n\r\n') + 4;
    sock.write(Buffer.from([0x81, 0x02, 0x68, 0x69])); // FIN text "hi", no mask bit
    await once(sock, 'close');
    const frame = buf.subarray(headerEnd);
    expect(frame[0]).toBe(0x88); // close frame
    expect(frame.readUInt16BE(2)).toBe(1002);
    const ok = await device('after');
    expect(ok.readyState).toBe(WebSocket.OPEN);
    ok.close();
  });

  it('counts acks from devices', async () => {
    const ws = await device('d1');
    ws.send(JSON.stringify({ type: 'ack', id: 'm-1' }));
    const closed = closeOf(ws);
    ws.send('not json');
    await closed;
    expect(node.metrics.get('pushbench_acks_total')).toBe(1);
  });
});

describe('connection lifecycle', () => {
  it('drops a device whose pongs stop, and keeps one that answers', async () => {
    await node.stop();
    await boot({ heartbeatTimeoutMs: 50 });
    const silent = new WebSocket(`${addr.wsUrl}?token=${token('silent')}`, { autoPong: false });
    await once(silent, 'open');
    const alive = await device('alive');
    const closed = once(silent, 'close');
    // Sweep until the silent device is out; the live one answers each ping with a pong.
    while (node.connections.get('silent')) {
      node.sweepHeartbeats();
      await new Promise((r) => setTimeout(r, 20));
    }
    await closed;
    expect(node.metrics.get('pushbench_disconnects_total', { reason: 'heartbeat_timeout' })).toBe(
      1,
    );
    expect(node.connections.get('alive')).toBeDefined();
    alive.close();
  });

  it('closes the older connection of a device that connects again (4001) and keeps the new one', async () => {
    const first = await device('dup');
    const firstClosed = closeOf(first);
    const second = await device('dup');
    expect(await firstClosed).toBe(4001);
    // The old socket's close must not remove the new entry (compare-and-delete).
    expect(node.connections.get('dup')?.ws).toBeDefined();
    const got = nextMessage(second);
    expect((await push('dup', { payload: 2 })).status).toBe(200);
    expect((await got).payload).toBe(2);
    expect(node.metrics.get('pushbench_disconnects_total', { reason: 'replaced' })).toBe(1);
    second.close();
  });

  it('refuses to start on a port in use with PB_PORT_IN_USE', async () => {
    const other = new PushNode({ secret: SECRET, apiKey: KEY, port: addr.port }, backends);
    await expect(other.start()).rejects.toMatchObject({ code: 'PB_PORT_IN_USE' });
  });
});

describe('capacity and overload', () => {
  it('unhealthy: health checks fail at capacity while upgrades are still accepted', async () => {
    await node.stop();
    await boot({ maxConnections: 2, overload: 'unhealthy' });
    const a = await device('cap-a');
    expect((await fetch(`${addr.httpUrl}/healthz`)).status).toBe(200);
    const b = await device('cap-b');
    const c = await device('cap-c');
    const full = await fetch(`${addr.httpUrl}/healthz`);
    expect(full.status).toBe(503);
    expect(await full.json()).toEqual({ status: 'over_capacity' });
    c.close();
    b.close();
    await once(b, 'close');
    await once(c, 'close');
    await new Promise((r) => setTimeout(r, 50));
    expect((await fetch(`${addr.httpUrl}/healthz`)).status).toBe(200);
    a.close();
  });

  it('crash: going past capacity calls onOverloadCrash once', async () => {
    await node.stop();
    const calls: number[] = [];
    await boot({ maxConnections: 1, overload: 'crash', onOverloadCrash: (n) => calls.push(n) });
    const a = await device('crash-a');
    expect(calls).toEqual([]);
    const b = await device('crash-b');
    const c = await device('crash-c');
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toEqual([2]);
    for (const ws of [a, b, c]) ws.close();
  });
});

describe('accept ceiling (a worker of a multi-process node near its open-file limit)', () => {
  it('stops accepting at the ceiling and accepts again once connections have gone, counting each pause', async () => {
    node.setAcceptCeiling(3, 1);
    const held = [await device('c1'), await device('c2'), await device('c3')];
    // This process alone listens here: with its listener closed, the port refuses.
    const refused = new WebSocket(`${addr.wsUrl}?token=${token('c4')}`);
    const err = await once(refused, 'error').then(([e]) => e as NodeJS.ErrnoException);
    expect(err.code).toBe('ECONNREFUSED');
    const pauses = node.metricsJson().metrics as Record<string, Record<string, number>>;
    expect(pauses.pushbench_accept_pauses_total?.['']).toBe(1);

    held[0]?.close();
    held[1]?.close();
    const deadline = Date.now() + 3000;
    for (;;) {
      const again = new WebSocket(`${addr.wsUrl}?token=${token('c5')}`);
      const outcome = await new Promise<string>((resolve) => {
        again.once('open', () => resolve('open'));
        again.once('error', () => resolve('error'));
      });
      if (outcome === 'open') {
        again.close();
        break;
      }
      if (Date.now() > deadline) throw new Error('the node never accepted again');
      await new Promise((r) => setTimeout(r, 20));
    }
    held[2]?.close();
  });
});
