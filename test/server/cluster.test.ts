import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MemoryBroker } from '../../server/broker-memory.js';
import {
  createBackends,
  type NodeAddress,
  type NodeBackends,
  type PushNode,
  startNode,
} from '../../server/node.js';
import { MemoryRegistry } from '../../server/registry-memory.js';
import { signToken } from '../../server/token.js';

const SECRET = 'cluster-secret';
const KEY = 'cluster-key';
const REDIS = 'redis://127.0.0.1:6379';

type Frame = Record<string, unknown>;

/** A device on a plain `ws` client that queues every frame it receives. */
class Device {
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  closeCode: number | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(String(data)) as Frame);
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(addr: NodeAddress, deviceId: string, accountId = 'acme'): Promise<Device> {
    const token = signToken(
      { deviceId, accountId, expiresAtSec: Date.now() / 1000 + 3600 },
      SECRET,
    );
    const ws = new WebSocket(`${addr.wsUrl}?token=${token}`);
    const d = new Device(ws);
    await once(ws, 'open');
    return d;
  }

  send(frame: Frame): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Waits for (and removes) the first frame matching `match`. */
  async next(match: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (Date.now() > deadline)
        throw new Error(`no matching frame; got ${JSON.stringify(this.frames).slice(0, 500)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async closed(timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.closeCode === undefined) {
      if (Date.now() > deadline) throw new Error('not closed');
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.closeCode;
  }

  close(): void {
    this.ws.close();
  }
}

async function api(
  addr: NodeAddress,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Frame }> {
  const res = await fetch(`${addr.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Frame };
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Cluster {
  nodes: PushNode[];
  addrs: NodeAddress[];
  backends: NodeBackends[];
}

const nodeOptions = {
  secret: SECRET,
  apiKey: KEY,
  heartbeatIntervalMs: 60_000,
  heartbeatTimeoutMs: 120_000,
  d2dAllow: new Map([['acme', new Set(['partner'])]]),
  d2dRatePerSec: 5,
  queueMaxAttempts: 2,
  queueRetryAfterMs: 150,
  nodeRequestTimeoutMs: 1000,
};

/** Three nodes sharing one backend: in-process memory views, or Redis under a fresh prefix. */
async function startCluster(kind: 'memory' | 'redis'): Promise<Cluster> {
  const cluster: Cluster = { nodes: [], addrs: [], backends: [] };
  const prefix = `pbtest:${randomBytes(4).toString('hex')}:`;
  const registry = new MemoryRegistry();
  const first = new MemoryBroker();
  for (let i = 1; i <= 3; i++) {
    const backends =
      kind === 'memory'
        ? { registry, broker: i === 1 ? first : new MemoryBroker({ shareWith: first }) }
        : await createBackends({ redisUrl: REDIS, redisPrefix: prefix });
    const { node, address } = await startNode({ ...nodeOptions, nodeId: `node-${i}` }, backends);
    cluster.nodes.push(node);
    cluster.addrs.push(address);
    cluster.backends.push(backends);
  }
  return cluster;
}

async function stopCluster(c: Cluster): Promise<void> {
  for (const n of c.nodes) await n.stop();
  for (const b of c.backends) {
    await b.registry.close();
    await b.broker.close();
  }
}

describe.each(['memory', 'redis'] as const)('three nodes over %s', (kind) => {
  let c: Cluster;
  let a1: NodeAddress;
  let a2: NodeAddress;
  let a3: NodeAddress;
  const opened: Device[] = [];
  const open = async (addr: NodeAddress, id: string, account?: string) => {
    const d = await Device.open(addr, id, account);
    opened.push(d);
    return d;
  };

  beforeAll(async () => {
    c = await startCluster(kind);
    [a1, a2, a3] = c.addrs as [NodeAddress, NodeAddress, NodeAddress];
  });

  afterAll(async () => {
    for (const d of opened) d.ws.terminate();
    await stopCluster(c);
  });

  it('routes a direct push through any node to the device on another node', async () => {
    const dev = await open(a2, `${kind}-push`);
    await until(
      async () => (await api(a1, 'POST', `/v1/push/${kind}-push`, { payload: 0 })).status !== 404,
    );
    const got = dev.next((f) => f.type === 'push' && f.id === 'm-1');
    expect(
      await api(a1, 'POST', `/v1/push/${kind}-push`, { payload: { n: 1 }, id: 'm-1' }),
    ).toEqual({
      status: 200,
      json: { status: 'delivered', id: 'm-1' },
    });
    expect((await got).payload).toEqual({ n: 1 });
    expect((await api(a3, 'POST', '/v1/push/nobody-here', { payload: 1 })).status).toBe(404);
  });

  it('waits for the device ack with ?ack=1 across nodes: 200 acked, or 504 without one', async () => {
    const dev = await open(a3, `${kind}-acker`);
    await until(
      async () => (await api(a1, 'POST', `/v1/push/${kind}-acker`, { payload: 0 })).status === 200,
    );
    const pending = api(a1, 'POST', `/v1/push/${kind}-acker?ack=1&timeout=3000`, {
      payload: 1,
      id: 'a-1',
    });
    await dev.next((f) => f.id === 'a-1');
    dev.send({ type: 'ack', id: 'a-1' });
    expect(await pending).toMatchObject({ status: 200, json: { status: 'acked' } });
    const silent = await api(a1, 'POST', `/v1/push/${kind}-acker?ack=1&timeout=200`, {
      payload: 2,
      id: 'a-2',
    });
    expect(silent).toMatchObject({ status: 504, json: { status: 'no_ack' } });
  });

  it('answers a batch push per device', async () => {
    await open(a1, `${kind}-b1`);
    await open(a3, `${kind}-b2`);
    await until(
      async () => (await api(a2, 'POST', `/v1/push/${kind}-b2`, { payload: 0 })).status === 200,
    );
    const r = await api(a2, 'POST', '/v1/push', {
      devices: [`${kind}-b1`, `${kind}-b2`, `${kind}-nobody`],
      payload: 'hi',
    });
    expect(r.status).toBe(200);
    expect(r.json.counts).toEqual({ delivered: 2, not_connected: 1 });
  });

  it('delivers d2d within an account and to allowed accounts, refuses others, rate-limits, caches lookups', async () => {
    const alice = await open(a1, `${kind}-alice`, 'acme');
    const bob = await open(a2, `${kind}-bob`, 'acme');
    const eve = await open(a3, `${kind}-eve`, 'evil');
    const pat = await open(a3, `${kind}-pat`, 'partner');
    await until(
      async () => (await api(a1, 'GET', '/v1/accounts/evil/devices')).json.devices !== undefined,
    );
    await until(
      async () =>
        ((await api(a1, 'GET', '/v1/accounts/partner/devices')).json.devices as unknown[])
          .length === 1,
    );
    const status = async (from: Device, to: string, id: string) => {
      from.send({ type: 'd2d', to, id, payload: { hello: to } });
      return (await from.next((f) => f.type === 'd2d_status' && f.id === id)).status;
    };
    expect(await status(alice, `${kind}-bob`, 'd1')).toBe('delivered');
    expect(await bob.next((f) => f.type === 'd2d')).toMatchObject({
      from: `${kind}-alice`,
      id: 'd1',
    });
    expect(await status(alice, `${kind}-eve`, 'd2')).toBe('forbidden');
    expect(await status(eve, `${kind}-alice`, 'd3')).toBe('forbidden');
    expect(await status(alice, `${kind}-pat`, 'd4')).toBe('delivered');
    await pat.next((f) => f.type === 'd2d' && f.id === 'd4');
    expect(await status(alice, `${kind}-ghost`, 'd5')).toBe('not_connected');
    // Burst is 2 x 5/s = 10; the 5 above used 5 tokens.
    const outcomes: unknown[] = [];
    for (let i = 0; i < 8; i++) outcomes.push(await status(alice, `${kind}-bob`, `r${i}`));
    expect(outcomes).toContain('rate_limited');
    const json = c.nodes[0]!.metricsJson() as { d2dCache: { hits: number; misses: number } };
    expect(json.d2dCache.hits).toBeGreaterThan(0);
    expect(json.d2dCache.misses).toBeGreaterThan(0);
  });

  it('fans a room message out to every node once, serves dump and resumes from an offset', async () => {
    const room = `${kind}-lobby`;
    const s2 = await open(a2, `${kind}-s2`);
    const s3 = await open(a3, `${kind}-s3`);
    s2.send({ type: 'subscribe', room, ref: 'x' });
    s3.send({ type: 'subscribe', room, ref: 'x' });
    await s2.next((f) => f.type === 'subscribed');
    await s3.next((f) => f.type === 'subscribed');
    const p1 = await api(a1, 'PUT', `/v1/rooms/${room}/messages`, { payload: { n: 1 }, id: 'r1' });
    expect(p1).toMatchObject({ status: 200, json: { status: 'published', offset: 1 } });
    const epoch = p1.json.epoch as string;
    for (const s of [s2, s3]) {
      expect(await s.next((f) => f.type === 'room')).toMatchObject({
        room,
        offset: 1,
        epoch,
        message: { id: 'r1', payload: { n: 1 } },
      });
    }
    await api(a2, 'PUT', `/v1/rooms/${room}/messages`, { payload: { n: 2 } });
    await api(a3, 'PUT', `/v1/rooms/${room}/messages`, { payload: { n: 3 } });
    const late = await open(a1, `${kind}-late`);
    late.send({ type: 'subscribe', room, dump: true, ref: 'd' });
    const dump = await late.next((f) => f.type === 'subscribed');
    expect(dump).toMatchObject({ epoch, offset: 3, complete: true });
    expect((dump.messages as { offset: number }[]).map((m) => m.offset)).toEqual([1, 2, 3]);
    const back = await open(a1, `${kind}-back`);
    back.send({ type: 'subscribe', room, since: { offset: 1, epoch } });
    const resumed = await back.next((f) => f.type === 'subscribed');
    expect(resumed).toMatchObject({ recovered: true, complete: true });
    expect(
      (resumed.messages as { message: { payload: unknown } }[]).map((m) => m.message.payload),
    ).toEqual([{ n: 2 }, { n: 3 }]);
    const stale = await open(a1, `${kind}-stale`);
    stale.send({ type: 'subscribe', room, since: { offset: 1, epoch: 'another-epoch' } });
    expect(await stale.next((f) => f.type === 'subscribed')).toMatchObject({
      recovered: false,
      complete: false,
    });
  });

  it('caps rooms per connection with an error frame', async () => {
    const [n] = c.nodes;
    const d = await open(a1, `${kind}-greedy`);
    const cap = n!.options.maxRoomsPerConnection;
    for (let i = 0; i <= cap; i++)
      d.send({ type: 'subscribe', room: `${kind}-cap-${i}`, ref: `c${i}` });
    expect(await d.next((f) => f.type === 'error')).toMatchObject({
      code: 'room_cap',
      ref: `c${cap}`,
    });
    expect(d.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('lists an account devices across nodes and sends presence events', async () => {
    const watcher = await open(a1, `${kind}-watch`, 'family');
    watcher.send({ type: 'presence', subscribe: true, ref: 'p' });
    await watcher.next((f) => f.type === 'presence' && f.subscribed === true);
    const phone = await open(a3, `${kind}-phone`, 'family');
    expect(await watcher.next((f) => f.type === 'presence' && f.status === 'online')).toMatchObject(
      {
        device: `${kind}-phone`,
        node: 'node-3',
      },
    );
    watcher.send({ type: 'devices', ref: 'l' });
    const list = await watcher.next((f) => f.type === 'devices');
    expect(
      (list.devices as { deviceId: string; nodeId: string }[]).map((d) => [d.deviceId, d.nodeId]),
    ).toEqual([
      [`${kind}-phone`, 'node-3'],
      [`${kind}-watch`, 'node-1'],
    ]);
    phone.close();
    expect(
      await watcher.next((f) => f.type === 'presence' && f.status === 'offline'),
    ).toMatchObject({
      device: `${kind}-phone`,
    });
  });

  it('closes the older connection of a device that reconnects to another node (4001)', async () => {
    const old = await open(a1, `${kind}-dup`);
    await until(
      async () => (await api(a2, 'POST', `/v1/push/${kind}-dup`, { payload: 0 })).status === 200,
    );
    const fresh = await open(a3, `${kind}-dup`);
    expect(await old.closed()).toBe(4001);
    await until(async () => {
      const r = await api(a2, 'POST', `/v1/push/${kind}-dup`, { payload: 'x', id: 'dup-x' });
      return r.status === 200;
    });
    await fresh.next((f) => f.id === 'dup-x');
  });

  it('delivers queued messages and dead-letters what cannot be delivered', async () => {
    const dev = await open(a3, `${kind}-queued`);
    await until(
      async () => (await api(a1, 'POST', `/v1/push/${kind}-queued`, { payload: 0 })).status === 200,
    );
    const r = await api(a1, 'POST', '/v1/queue', {
      messages: [
        { device: `${kind}-queued`, id: 'q-1', payload: { via: 'queue' } },
        { device: `${kind}-absent`, id: 'q-2', payload: 1 },
      ],
    });
    expect(r.status).toBe(202);
    expect(await dev.next((f) => f.id === 'q-1')).toMatchObject({ payload: { via: 'queue' } });
    const broker = c.backends[0]!.broker;
    await until(
      async () => (await broker.deadLetters(10)).some((d) => d.data.includes(`${kind}-absent`)),
      8000,
    );
    const dead = (await broker.deadLetters(10)).find((d) => d.data.includes(`${kind}-absent`))!;
    expect(dead.reason).toMatch(/not_connected after 2 attempts/);
    expect((await api(a1, 'POST', '/v1/queue', { device: 'x' })).status).toBe(400);
  });

  it('drains a node: healthz 503, goaway then close 1001, new upgrades refused', async () => {
    const d = await open(a2, `${kind}-drained`);
    const r = await api(a2, 'POST', '/v1/admin/drain', { windowMs: 100 });
    expect(r).toMatchObject({ status: 202, json: { status: 'draining' } });
    expect((await fetch(`${a2.httpUrl}/healthz`)).status).toBe(503);
    expect(await d.next((f) => f.type === 'goaway')).toMatchObject({ reason: 'drain' });
    expect(await d.closed()).toBe(1001);
    const refused = new WebSocket(
      `${a2.wsUrl}?token=${signToken({ deviceId: 'z', accountId: 'a', expiresAtSec: Date.now() / 1000 + 60 }, SECRET)}`,
    );
    refused.on('error', () => {});
    const [, res] = (await once(refused, 'unexpected-response')) as [
      unknown,
      { statusCode: number; destroy(): void },
    ];
    expect(res.statusCode).toBe(503);
    res.destroy();
    await c.nodes[1]!.drained();
  });
});

describe('lifetime, caps and admission', () => {
  it('sends goaway when a connection outlives its lifetime, then closes it with 4002', async () => {
    const { node, address, backends } = await startNode({
      ...nodeOptions,
      maxLifetimeMs: 50,
      lifetimeJitterMs: 0,
      goawayGraceMs: 100,
    });
    try {
      const d = await Device.open(address, 'old-timer');
      await until(() => {
        node.sweepHeartbeats();
        return d.frames.some((f) => f.type === 'goaway');
      });
      expect(await d.next((f) => f.type === 'goaway')).toMatchObject({ reason: 'lifetime' });
      await until(() => {
        node.sweepHeartbeats();
        return d.closeCode !== undefined;
      });
      expect(d.closeCode).toBe(4002);
    } finally {
      await node.stop();
      await backends.registry.close();
      await backends.broker.close();
    }
  });

  it('refuses upgrades over the connection cap (503) and over the admission rate (429)', async () => {
    const { node, address, backends } = await startNode({
      ...nodeOptions,
      maxConnections: 1,
      admissionRatePerSec: 2,
    });
    const status = async (id: string) => {
      const token = signToken(
        { deviceId: id, accountId: 'a', expiresAtSec: Date.now() / 1000 + 60 },
        SECRET,
      );
      const ws = new WebSocket(`${address.wsUrl}?token=${token}`);
      ws.on('error', () => {});
      const result = await Promise.race([
        once(ws, 'open').then(() => 101),
        once(ws, 'unexpected-response').then(([, res]) => {
          (res as { destroy(): void }).destroy();
          return (res as { statusCode: number }).statusCode;
        }),
      ]);
      return { ws, result };
    };
    try {
      const first = await status('c1');
      expect(first.result).toBe(101);
      expect((await status('c2')).result).toBe(503);
      first.ws.close();
      await until(() => node.connections.size === 0);
      const results: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await status(`r${i}`);
        results.push(r.result);
        r.ws.terminate();
        await until(() => node.connections.size === 0);
      }
      expect(results).toContain(429);
    } finally {
      await node.stop();
      await backends.registry.close();
      await backends.broker.close();
    }
  });

  it.each(['drop', 'disconnect'] as const)(
    'bounds a slow consumer send buffer (%s): never unbounded memory',
    async (policy) => {
      const { node, address, backends } = await startNode({
        ...nodeOptions,
        maxBufferedBytes: 256 * 1024,
        pushRatePerSec: 1_000_000,
        slowConsumer: policy,
      });
      const { connect } = await import('node:net');
      const sock = connect(address.port, address.host);
      sock.on('error', () => {});
      try {
        await once(sock, 'connect');
        const token = signToken(
          { deviceId: 'slow', accountId: 'a', expiresAtSec: Date.now() / 1000 + 60 },
          SECRET,
        );
        sock.write(
          `GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
        await once(sock, 'data');
        // The device stops reading: the kernel buffers fill, then the node's own.
        sock.pause();
        const payload = 'x'.repeat(60_000);
        const statuses = new Set<number>();
        for (let i = 0; i < 3000 && !statuses.has(503) && !statuses.has(404); i++) {
          const r = await api(address, 'POST', '/v1/push/slow', { payload });
          statuses.add(r.status);
        }
        if (policy === 'drop') {
          expect(statuses).toContain(503);
          expect(
            node.metrics.get('pushbench_slow_consumer_total', { action: 'drop' }),
          ).toBeGreaterThan(0);
          expect(node.connections.size).toBe(1);
        } else {
          expect(
            node.metrics.get('pushbench_slow_consumer_total', { action: 'disconnect' }),
          ).toBeGreaterThan(0);
          await until(() => node.connections.size === 0);
        }
      } finally {
        sock.destroy();
        await node.stop();
        await backends.registry.close();
        await backends.broker.close();
      }
    },
  );
});
