/**
 * Direct links between nodes (server/peer-link.ts): requests go to the
 * holder's peer port, not through the broker; a link that cannot open or
 * closes fails its requests at once; the peer port answers bad input with a
 * documented status or close code and goes on serving.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { NodeUnreachableError } from '../../core/errors.js';
import type { Broker } from '../../server/broker.js';
import { MemoryBroker } from '../../server/broker-memory.js';
import { NodeLink, type NodeReply, type NodeRequest } from '../../server/cluster.js';
import { type PushNode, startNode } from '../../server/node.js';
import { PeerServer } from '../../server/peer-link.js';
import { MemoryRegistry } from '../../server/registry-memory.js';
import { signToken } from '../../server/token.js';

const KEY = 'peer-key';
const SECRET = 'peer-secret';

/** A broker that is down: only a peer link can carry a request. */
const downBroker = {
  publish: () => Promise.reject(new Error('broker down')),
  subscribe: () => Promise.resolve(),
  unsubscribe: () => Promise.resolve(),
} as unknown as Broker;

const push = (deviceId: string): NodeRequest => ({
  t: 'push',
  deviceId,
  id: `m-${deviceId}`,
  payloadJson: '{}',
  wantAck: false,
  ackTimeoutMs: 0,
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A holder named `b` whose handler answers with `answer`, behind a peer port. */
async function holder(
  answer: (req: NodeRequest) => Promise<NodeReply>,
): Promise<{ address: string; server: PeerServer }> {
  const link = new NodeLink(downBroker, 'b', answer, KEY);
  const server = new PeerServer(KEY, (env, reply) => link.serve(env, reply));
  const address = await server.listen('127.0.0.1');
  cleanups.push(
    () => server.close(),
    () => link.stop(),
  );
  return { address, server };
}

function caller(key = KEY): NodeLink {
  const link = new NodeLink(downBroker, 'a', () => Promise.resolve({ outcome: 'error' }), key);
  cleanups.push(() => link.stop());
  return link;
}

async function rejectsWithin(p: Promise<unknown>, ms: number): Promise<unknown> {
  const t0 = performance.now();
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(performance.now() - t0).toBeLessThan(ms);
  return err;
}

describe('peer links', () => {
  it('carry requests to the holder with the broker down, many at once on one link', async () => {
    const { address } = await holder(async (req) => ({
      outcome: req.t === 'push' ? `delivered ${req.deviceId}` : 'error',
    }));
    const a = caller();
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => a.request('b', push(`d${i}`), 2000, address)),
    );
    expect(replies.map((r) => r.outcome)).toEqual(
      Array.from({ length: 200 }, (_, i) => `delivered d${i}`),
    );
    // Without a peer address the request takes the broker, which is down here.
    await expect(a.request('b', push('x'), 2000)).rejects.toThrow(/broker down/);
  });

  it('fail at once, not at the timeout, when the link cannot open or closes with requests in it', async () => {
    const { address, server } = await holder(() => new Promise<NodeReply>(() => {}));
    // A wrong key: the peer port answers 401 and the link never opens.
    const wrong = await rejectsWithin(caller('wrong').request('b', push('k'), 5000, address), 2000);
    expect(wrong).toBeInstanceOf(NodeUnreachableError);
    expect((wrong as Error).message).toBe(
      `node b is unreachable: its peer link at ${address} closed`,
    );
    // Nothing listens there.
    const port = Number(address.split(':')[1]);
    const nobody = await rejectsWithin(
      caller().request('b', push('n'), 5000, `127.0.0.1:${port === 65_535 ? 1 : port + 1}`),
      2000,
    );
    expect(nobody).toBeInstanceOf(NodeUnreachableError);
    // The holder goes away while the request waits for its answer.
    const a = caller();
    const waiting = a.request('b', push('w'), 5000, address);
    await new Promise((r) => setTimeout(r, 200));
    server.close();
    expect(await rejectsWithin(waiting, 2000)).toBeInstanceOf(NodeUnreachableError);
  });

  it('the peer port: 404 and 401 for what is not an authorised peer upgrade, 1008 for a bad frame, 1009 for one too big, and it goes on serving', async () => {
    const { address } = await holder(async () => ({ outcome: 'delivered' }));
    expect((await fetch(`http://${address}/peer`)).status).toBe(404);
    const refused = async (path: string, key?: string) => {
      const ws = new WebSocket(`ws://${address}${path}`, {
        ...(key !== undefined && { headers: { authorization: `Bearer ${key}` } }),
      });
      ws.on('error', () => {});
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
      ws.terminate();
      return res.statusCode;
    };
    expect(await refused('/peer')).toBe(401);
    expect(await refused('/peer', 'nope')).toBe(401);
    expect(await refused('/other', KEY)).toBe(404);
    const closeOf = async (frame: string) => {
      const ws = new WebSocket(`ws://${address}/peer`, {
        headers: { authorization: `Bearer ${KEY}` },
      });
      await once(ws, 'open');
      ws.send(frame);
      const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
      return `${code} ${reason.toString()}`;
    };
    for (const bad of [
      'garbage',
      '[]',
      JSON.stringify({ kind: 'rep', rid: 1, from: 'x', rep: { outcome: 'delivered' } }),
      JSON.stringify({ kind: 'req', rid: 1, from: 'x', req: { t: 'push', id: 'm' } }),
      JSON.stringify({ kind: 'req', rid: 'one', from: 'x', req: push('d') }),
      JSON.stringify([{ kind: 'req', rid: 1, from: 'x', req: push('d') }, 7]),
    ]) {
      expect(await closeOf(bad)).toBe('1008 not a peer message');
    }
    expect(await closeOf('x'.repeat(16 * 1024 * 1024 + 1))).toMatch(/^1009 /);
    expect((await caller().request('b', push('ok'), 2000, address)).outcome).toBe('delivered');
  });

  it.each([
    [true, 'writes its peer port into the registry and a forwarded push skips the broker'],
    [false, 'with peerLinks false writes none and a forwarded push takes the broker inbox'],
  ])('in a cluster, each node process (peer links %s) %s', async (peerLinks) => {
    const registry = new MemoryRegistry();
    const first = new MemoryBroker();
    const brokers = [first, new MemoryBroker({ shareWith: first })];
    const nodes: PushNode[] = [];
    const addrs = [];
    for (const [i, broker] of brokers.entries()) {
      const { node, address } = await startNode(
        {
          secret: SECRET,
          apiKey: KEY,
          nodeId: `node-${i + 1}`,
          heartbeatIntervalMs: 60_000,
          heartbeatTimeoutMs: 120_000,
          peerLinks,
        },
        { registry, broker },
      );
      nodes.push(node);
      addrs.push(address);
      cleanups.push(() => node.stop());
    }
    const token = signToken(
      { deviceId: 'dev-1', accountId: 'acme', expiresAtSec: Date.now() / 1000 + 600 },
      SECRET,
    );
    const ws = new WebSocket(`${addrs[1]!.wsUrl}?token=${token}`);
    cleanups.push(() => ws.terminate());
    const frames: string[] = [];
    ws.on('message', (d) => frames.push(String(d)));
    await once(ws, 'open');
    let entry = await registry.lookup('dev-1');
    for (let i = 0; i < 100 && entry === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      entry = await registry.lookup('dev-1');
    }
    expect(entry?.nodeId).toBe('node-2');
    if (peerLinks) {
      expect(entry?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(entry?.peer).not.toBe(`127.0.0.1:${addrs[1]!.port}`);
    } else {
      expect(entry?.peer).toBeUndefined();
    }

    const inboxes: string[] = [];
    for (const b of brokers) {
      const publish = b.publish.bind(b);
      b.publish = (channel, data) => {
        if (channel.startsWith('node:')) inboxes.push(channel);
        return publish(channel, data);
      };
    }
    const res = await fetch(`${addrs[0]!.httpUrl}/v1/push/dev-1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ payload: { n: 1 } }),
    });
    expect(res.status).toBe(200);
    for (let i = 0; i < 100 && !frames.some((f) => f.includes('"push"')); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(frames.some((f) => f.includes('"push"') && f.includes('"n":1'))).toBe(true);
    // Without peer links: the request to node-2's inbox, the answer to node-1's.
    expect(inboxes).toEqual(peerLinks ? [] : ['node:node-2', 'node:node-1']);
  });
});
