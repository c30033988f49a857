import { once } from 'node:events';
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
