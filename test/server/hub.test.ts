import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { HubClient } from '../../server/hub-client.js';
import { type NodeBackends, type PushNode, startNode } from '../../server/node.js';

const KEY = 'hub-key';
const started: Array<{ node: PushNode; backends: NodeBackends }> = [];
const clients: HubClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const { node, backends } of started.splice(0)) {
    await node.stop();
    await backends.registry.close();
    await backends.broker.close();
  }
});

/** A node serving its hub at `ws://…/internal/hub`. */
async function hubNode(): Promise<string> {
  const s = await startNode({ secret: 'hub-secret', apiKey: KEY, nodeId: 'hub' });
  started.push(s);
  return `${s.address.httpUrl.replace('http', 'ws')}/internal/hub`;
}

/** A raw WebSocket to the hub and every frame it receives, parsed. */
async function rawClient(url: string) {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${KEY}` } });
  const frames: unknown[] = [];
  ws.on('message', (d) => frames.push(JSON.parse(String(d))));
  await once(ws, 'open');
  const nextFrame = async (): Promise<unknown> => {
    while (frames.length === 0) await new Promise((r) => setTimeout(r, 5));
    return frames.shift();
  };
  return { ws, frames, nextFrame };
}

const entry = (connId: string) => ({
  nodeId: 'n1',
  connId,
  accountId: 'acct',
  connectedAtMs: 1,
});

describe('cluster hub wire format', () => {
  it('answers a frame holding an array of requests with one frame holding an array of replies', async () => {
    const { ws, nextFrame } = await rawClient(await hubNode());
    ws.send(
      JSON.stringify([
        { id: 1, target: 'registry', method: 'register', args: ['d1', entry('c1'), 60_000] },
        { id: 2, target: 'registry', method: 'register', args: ['d2', entry('c2'), 60_000] },
        { id: 3, target: 'registry', method: 'lookup', args: ['d1'] },
      ]),
    );
    const frame = (await nextFrame()) as Array<{ id: number; result: unknown }>;
    expect(Array.isArray(frame)).toBe(true);
    expect(frame.map((r) => r.id).sort()).toEqual([1, 2, 3]);
    expect(frame.find((r) => r.id === 3)?.result).toMatchObject({ connId: 'c1' });
    // A lone request still gets a lone reply.
    ws.send(JSON.stringify({ id: 4, target: 'registry', method: 'lookup', args: ['d2'] }));
    expect(await nextFrame()).toMatchObject({ id: 4, result: { connId: 'c2' } });
    ws.close();
  });

  it('closes with 1008 when any request of a frame is not a hub request, or the array is empty', async () => {
    const url = await hubNode();
    for (const bad of [
      [
        { id: 1, target: 'registry', method: 'lookup', args: ['d'] },
        { id: 2, method: 'x' },
      ],
      [{ id: 1, target: 'registry', method: 'flushall', args: [] }],
      [],
      [null],
    ]) {
      const { ws } = await rawClient(url);
      ws.send(JSON.stringify(bad));
      const [code] = (await once(ws, 'close')) as [number];
      expect(code).toBe(1008);
    }
  });
});

/** The HTTP status and `error` a node answers a hub upgrade with, when it refuses one. */
async function hubRefusal(url: string): Promise<{ status: number; error: unknown }> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${KEY}` } });
  ws.on('error', () => {});
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  let body = '';
  for await (const chunk of res) body += String(chunk);
  return { status: res.statusCode ?? 0, error: (JSON.parse(body) as { error?: unknown }).error };
}

describe('which node serves a hub', () => {
  it('serves one only when its broker lives in its own process', async () => {
    const redisUrl = process.env.PUSHBENCH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
    const redisPrefix = `pushbench-test:hub:${process.pid}-${Date.now()}:`;
    const withRedis = await startNode({
      secret: 'hub-secret',
      apiKey: KEY,
      nodeId: 'redis-node',
      redisUrl,
      redisPrefix,
    });
    started.push(withRedis);
    const hubUrl = await hubNode();
    const joined = await startNode({
      secret: 'hub-secret',
      apiKey: KEY,
      nodeId: 'joiner',
      join: hubUrl.replace('ws', 'http').replace('/internal/hub', ''),
    });
    started.unshift(joined); // stopped before the node whose hub it joined
    try {
      for (const { address } of [withRedis, joined]) {
        const url = `${address.httpUrl.replace('http', 'ws')}/internal/hub`;
        expect(await hubRefusal(url)).toEqual({ status: 404, error: 'no_hub_with_redis' });
      }
      // The memory node's hub answers (the joiner is its client).
      const client = await HubClient.connect(hubUrl, KEY);
      clients.push(client);
      expect(await client.lookup('nobody')).toBeUndefined();
    } finally {
      // Stopped here rather than after the test so that its keys can be removed.
      started.splice(started.indexOf(withRedis), 1);
      await withRedis.node.stop();
      await withRedis.backends.registry.close();
      await withRedis.backends.broker.close();
      const redis = new Redis(redisUrl);
      const keys = await redis.keys(`${redisPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });
});

describe('HubClient', () => {
  it('resolves every one of a burst of calls made in one turn, each with its own answer', async () => {
    const url = await hubNode();
    const a = await HubClient.connect(url, KEY);
    const b = await HubClient.connect(url, KEY);
    clients.push(a, b);
    await Promise.all(
      Array.from({ length: 500 }, (_, i) => a.register(`dev${i}`, entry(`c${i}`), 60_000)),
    );
    const seen = await Promise.all(Array.from({ length: 500 }, (_, i) => b.lookup(`dev${i}`)));
    expect(seen.map((e) => e?.connId)).toEqual(Array.from({ length: 500 }, (_, i) => `c${i}`));
  });

  it('is not held up by a blocking call sent in the same frame', async () => {
    const url = await hubNode();
    const a = await HubClient.connect(url, KEY, 10_000);
    clients.push(a);
    let consumed = false;
    const waiting = a
      .consume('worker', { count: 1, blockMs: 3000, retryAfterMs: 1000 })
      .then((messages) => {
        consumed = true;
        return messages;
      });
    // Same turn: both requests leave in one frame; the register is answered at once.
    await a.register('quick', entry('q'), 60_000);
    expect(consumed).toBe(false);
    // The hub node's own queue processor consumes too, so the wait ends empty.
    expect(Array.isArray(await waiting)).toBe(true);
    expect(consumed).toBe(true);
  });

  it('delivers channel messages forwarded in the same frame as replies', async () => {
    const url = await hubNode();
    const a = await HubClient.connect(url, KEY);
    const b = await HubClient.connect(url, KEY);
    clients.push(a, b);
    const got: string[] = [];
    await b.subscribe('news', (data) => got.push(data));
    await Promise.all(Array.from({ length: 50 }, (_, i) => a.publish('news', `m${i}`)));
    while (got.length < 50) await new Promise((r) => setTimeout(r, 5));
    // One publisher's messages on one channel arrive in order.
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
  });
});
