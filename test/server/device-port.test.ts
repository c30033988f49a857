import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MAX_HEAD_BYTES, parseHead } from '../../server/device-port.js';
import type { NodeAddress, NodeBackends, PushNode } from '../../server/node.js';
import { signToken } from '../../server/token.js';
import { startTestNode, TEST_API_KEY, TEST_SECRET } from '../helpers/node.js';

let node: PushNode | undefined;
let backends: NodeBackends | undefined;
const sockets: Socket[] = [];

async function boot(options: Partial<PushNode['options']> = {}): Promise<NodeAddress> {
  const started = await startTestNode(options);
  node = started.node;
  backends = started.backends;
  return started.address;
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await node?.stop();
  await backends?.registry.close();
  await backends?.broker.close();
  node = undefined;
  backends = undefined;
});

function token(deviceId: string): string {
  return signToken(
    { deviceId, accountId: 'acct', expiresAtSec: Date.now() / 1000 + 3600 },
    TEST_SECRET,
  );
}

function upgradeHead(path: string, extra = ''): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: node\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
  );
}

/** A raw socket to the node, with everything it receives collected. */
async function raw(
  addr: NodeAddress,
): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const socket = connect(addr.port, addr.host);
  sockets.push(socket);
  let received = '';
  socket.on('data', (d) => {
    received += d.toString('latin1');
  });
  socket.on('error', () => {});
  const closed = once(socket, 'close').then(() => {});
  await once(socket, 'connect');
  return { socket, text: () => received, closed };
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function refusals(reason: string): number {
  const json = node?.metricsJson().metrics as Record<string, Record<string, number>>;
  const family = json.pushbench_upgrades_refused_total ?? {};
  return Object.entries(family)
    .filter(([labels]) => labels.includes(reason))
    .reduce((sum, [, n]) => sum + n, 0);
}

describe('parseHead', () => {
  it('reads a device upgrade: the target and the four headers the upgrade needs', () => {
    const req = parseHead(
      upgradeHead('/ws?token=abc&hello=1', 'X-Other:  kept out \r\n').slice(0, -4),
    );
    expect(req).toEqual({
      method: 'GET',
      url: '/ws?token=abc&hello=1',
      headers: {
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
      },
    });
  });

  it('joins a repeated header with ", " as node:http does', () => {
    const head = upgradeHead('/ws', 'Sec-WebSocket-Key: second\r\n').slice(0, -4);
    expect(parseHead(head)?.headers['sec-websocket-key']).toBe('dGhlIHNhbXBsZSBub25jZQ==, second');
  });

  it('leaves to node:http what it does not read: other versions, bare LF, folding, bad names, controls, no Upgrade', () => {
    const good = upgradeHead('/ws').slice(0, -4);
    expect(parseHead(good)).toBeDefined();
    for (const head of [
      good.replace('HTTP/1.1', 'HTTP/1.0'),
      good.replace('Host: node\r\n', 'Host: node\n'),
      good.replace('Host: node', 'Host: node\r\n  folded'),
      good.replace('Host:', 'Bad Name:'),
      good.replace('Host: node', 'Host: no\x00de'),
      good.replace('Upgrade: websocket\r\n', ''),
      good.replace('GET /ws', 'GET /ws x'),
      good.replace('GET /ws', 'GET  /ws'),
    ]) {
      expect(parseHead(head), JSON.stringify(head)).toBeUndefined();
    }
  });
});

describe('the node port front', () => {
  it('upgrades a device whose head arrives a byte at a time', async () => {
    const addr = await boot();
    const c = await raw(addr);
    const head = upgradeHead(`/ws?token=${token('d1')}`);
    for (const ch of head) {
      c.socket.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    await until(() => c.text().includes('\r\n\r\n'));
    expect(c.text()).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(c.text()).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    await until(() => node?.connectionCount() === 1);
  });

  it('serves the HTTP API on the same port: keep-alive, pipelined requests, and a plain GET of /ws', async () => {
    const addr = await boot();
    const ws = new WebSocket(`${addr.wsUrl}?token=${token('d1')}`);
    await once(ws, 'open');
    const got = once(ws, 'message');
    const res = await fetch(`${addr.httpUrl}/v1/push/d1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ payload: 'hi' }),
    });
    expect(res.status).toBe(200);
    expect(String((await got)[0])).toContain('"hi"');
    ws.close();

    // Two requests written together on one socket: node:http answers both.
    const c = await raw(addr);
    c.socket.write(
      'GET /healthz HTTP/1.1\r\nHost: n\r\n\r\nGET /healthz HTTP/1.1\r\nHost: n\r\n\r\n',
    );
    await until(() => (c.text().match(/HTTP\/1\.1 200/g) ?? []).length === 2);

    // /ws without an upgrade is not a device: node:http answers it as the API does.
    const plain = await fetch(`${addr.httpUrl}/ws`);
    expect(plain.status).toBe(404);
  });

  it('answers 431 to a head over 16 KiB and 400 to garbage, and keeps serving devices', async () => {
    const addr = await boot();
    const big = await raw(addr);
    big.socket.write(`GET /ws?token=x HTTP/1.1\r\nX-Big: ${'a'.repeat(MAX_HEAD_BYTES + 10)}\r\n`);
    await big.closed;
    expect(big.text()).toMatch(/^HTTP\/1\.1 431 /);

    const junk = await raw(addr);
    junk.socket.write('\x16\x03\x01\x02\x00 not http at all\r\n\r\n');
    await junk.closed;
    expect(junk.text()).toMatch(/^HTTP\/1\.1 400 /);

    const ws = new WebSocket(`${addr.wsUrl}?token=${token('d2')}`);
    await once(ws, 'open');
    ws.close();
  });

  it('answers 408 to a socket that sends its head too slowly, or nothing, and counts it', async () => {
    const addr = await boot({ headTimeoutMs: 300 });
    const slow = await raw(addr);
    slow.socket.write('GET /ws?token=x HTTP/1.1\r\n');
    const drip = setInterval(() => slow.socket.write('X-Drip: 1\r\n'), 100);
    const silent = await raw(addr);
    await Promise.all([slow.closed, silent.closed]);
    clearInterval(drip);
    expect(slow.text()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(slow.text()).toContain('head_too_slow');
    expect(silent.text()).toMatch(/^HTTP\/1\.1 408 /);
    expect(refusals('head_too_slow')).toBe(2);

    // A device that takes less than the bound is upgraded.
    const ws = new WebSocket(`${addr.wsUrl}?token=${token('d3')}`);
    await once(ws, 'open');
    ws.close();
  });

  it('sheds the oldest slow heads past --max-pending-upgrades (503 pending_shed, counted); a device still connects', async () => {
    const addr = await boot({ headTimeoutMs: 10_000, maxPendingUpgrades: 50 });
    const open = async (n: number) => {
      const out: Awaited<ReturnType<typeof raw>>[] = [];
      for (let i = 0; i < n; i++) {
        const r = await raw(addr);
        r.socket.write('GET /ws?token=x HTTP/1.1\r\n');
        out.push(r);
      }
      return out;
    };
    const first = await open(80);
    // Young heads are never shed (a herd's, not read yet, would be): 80 wait over a cap of 50.
    await until(() => node?.devicePortWaiting === 80);
    expect(refusals('pending_shed')).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    // Each newcomer over the cap sheds the oldest, now a second old.
    const second = await open(30);
    await Promise.all(first.slice(0, 30).map((r) => r.closed));
    for (const r of first.slice(0, 30)) {
      expect(r.text()).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
      expect(r.text()).toContain('pending_shed');
    }
    expect(refusals('pending_shed')).toBe(30);
    expect(second.every((r) => r.text() === '')).toBe(true);
    // A device completes its head at once and is upgraded.
    const ws = new WebSocket(`${addr.wsUrl}?token=${token('d4')}`);
    await once(ws, 'open');
    ws.close();
  });

  it('refuses a device head that is not a valid version-13 upgrade with 400', async () => {
    const addr = await boot();
    const c = await raw(addr);
    c.socket.write(upgradeHead(`/ws?token=${token('d4')}`).replace('Version: 13', 'Version: 8'));
    await c.closed;
    expect(c.text()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(c.text()).toContain('Sec-WebSocket-Version: 13');
  });
});
