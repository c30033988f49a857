import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerUnavailableError, PushbenchError, QueueFullError } from '../../core/errors.js';
import { createBroker } from '../../server/backends.js';
import type { Broker, BrokerOptions, QueuedMessage } from '../../server/broker.js';
import { MemoryBroker } from '../../server/broker-memory.js';
import { RedisBroker } from '../../server/broker-redis.js';

// CI starts a Redis server; without one the Redis half fails (never skips).
const redisUrl = process.env.PUSHBENCH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const runPrefix = `pushbench-test:broker:${process.pid}-${randomUUID().slice(0, 8)}:`;
/** A retry delay no test waits out: "not due yet". */
const NEVER_MS = 600_000;

/** Two brokers on one backend, as two nodes see it. */
interface Pair {
  a: Broker;
  b: Broker;
  /** A TTL / retry delay short enough to wait out. */
  shortMs: number;
  /** Lets `ms` of broker time pass: memory moves its clock; Redis lives in real time, so callers poll. */
  elapse(ms: number): void;
  /** Whether the room's history is gone, asked without touching it (a read would refresh it). */
  roomGone(room: string): Promise<boolean>;
  close(): Promise<void>;
}

interface Backend {
  name: string;
  open(options?: BrokerOptions): Promise<Pair>;
}

const memory: Backend = {
  name: 'memory',
  async open(options = {}) {
    let nowMs = 1_000_000;
    const a = new MemoryBroker({ ...options, nowMs: () => nowMs });
    const b = new MemoryBroker({ shareWith: a });
    return {
      a,
      b,
      shortMs: 1000,
      elapse(ms) {
        nowMs += ms;
      },
      // elapse() moved the clock past the TTL; the next read sees the room gone.
      roomGone: async () => true,
      async close() {
        await a.close();
        await b.close();
      },
    };
  },
};

async function connectRedis(
  keyPrefix: string,
  options: BrokerOptions = {},
  url = redisUrl,
): Promise<RedisBroker> {
  try {
    return await RedisBroker.connect({ ...options, url, keyPrefix });
  } catch (err) {
    throw new Error(
      `the Redis half of the broker contract needs a Redis server at ${url} ` +
        `(CI starts one; locally run \`redis-server\`, or set PUSHBENCH_TEST_REDIS_URL): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

let testSeq = 0;
const redis: Backend = {
  name: 'redis',
  async open(options = {}) {
    // A prefix per test: tests cannot see each other's rooms or queue.
    const keyPrefix = `${runPrefix}${++testSeq}:`;
    const a = await connectRedis(keyPrefix, options);
    const b = await connectRedis(keyPrefix, options);
    return {
      a,
      b,
      shortMs: 150,
      elapse() {},
      roomGone: async (room) => (await admin().exists(`${keyPrefix}room:{${room}}:epoch`)) === 0,
      async close() {
        await a.close();
        await b.close();
      },
    };
  },
};

let adminConnection: Redis | undefined;
/** A plain connection for looking at and cleaning up keys behind the broker's back. */
function admin(): Redis {
  adminConnection ??= new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  return adminConnection;
}

afterAll(async () => {
  // Delete every key this run made; fails loudly (like the tests) without Redis.
  try {
    let cursor = '0';
    do {
      const [next, keys] = await admin().scan(cursor, 'MATCH', `${runPrefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await admin().del(...keys);
    } while (cursor !== '0');
  } finally {
    admin().disconnect();
  }
});

/** Polls `probe` until it returns something other than undefined/false, or fails at the deadline. */
async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Collects what a subscription receives. */
function inbox(): { got: string[]; handler: (data: string) => void } {
  const got: string[] = [];
  return { got, handler: (data) => got.push(data) };
}

const hist = { maxLength: 1000, ttlMs: 60_000 };

describe.each([memory, redis])('broker contract: $name', (backend) => {
  let pair: Pair;
  let extra: Pair | undefined;

  async function open(options?: BrokerOptions): Promise<Pair> {
    extra = await backend.open(options);
    return extra;
  }

  // A fresh pair per test, so without Redis every Redis test fails (none is skipped).
  beforeEach(async () => {
    pair = await backend.open();
  });
  afterEach(async () => {
    await pair?.close();
    await extra?.close();
    extra = undefined;
  });

  /** A room/channel name no other test uses. */
  const fresh = (what: string) => `${what}-${randomUUID().slice(0, 8)}`;

  describe('pub/sub', () => {
    it('delivers a publish to every handler on both nodes, never inside publish()', async () => {
      const channel = fresh('ch');
      const onA = inbox();
      const onB1 = inbox();
      const onB2 = inbox();
      await pair.a.subscribe(channel, onA.handler);
      await pair.b.subscribe(channel, onB1.handler);
      await pair.b.subscribe(channel, onB2.handler);
      let insidePublish = false;
      const reentered: boolean[] = [];
      await pair.a.subscribe(channel, () => reentered.push(insidePublish));

      insidePublish = true;
      const published = pair.a.publish(channel, '{"n":1}');
      insidePublish = false;
      await published;

      await until('all four handlers', () =>
        [onA.got, onB1.got, onB2.got, reentered].every((g) => g.length === 1),
      );
      expect(onA.got).toEqual(['{"n":1}']);
      expect(onB1.got).toEqual(['{"n":1}']);
      expect(onB2.got).toEqual(['{"n":1}']);
      expect(reentered).toEqual([false]);
      await pair.a.unsubscribe(channel);
      await pair.b.unsubscribe(channel);
    });

    it("keeps one publisher's order on a channel", async () => {
      const channel = fresh('order');
      const onB = inbox();
      await pair.b.subscribe(channel, onB.handler);
      const sent = Array.from({ length: 50 }, (_, i) => String(i));
      for (const data of sent) await pair.a.publish(channel, data);
      await until('50 messages', () => onB.got.length === 50);
      expect(onB.got).toEqual(sent);
      await pair.b.unsubscribe(channel);
    });

    it("stops delivery to the node that unsubscribed and only to that node's handlers", async () => {
      const channel = fresh('unsub');
      const fence = fresh('fence');
      const onA = inbox();
      const onB = inbox();
      const fenceB = inbox();
      await pair.a.subscribe(channel, onA.handler);
      await pair.b.subscribe(channel, onB.handler);
      await pair.b.subscribe(fence, fenceB.handler);
      await pair.a.publish(channel, 'before');
      await until('both got "before"', () => onA.got.length === 1 && onB.got.length === 1);

      await pair.b.unsubscribe(channel);
      await pair.a.publish(channel, 'after');
      // Same publisher, same subscriber connection: once b sees the fence, anything
      // published on the channel before it would already have reached b.
      await pair.a.publish(fence, 'fence');
      await until(
        'a got "after" and b the fence',
        () => onA.got.includes('after') && fenceB.got.includes('fence'),
      );
      expect(onB.got).toEqual(['before']);
      expect(onA.got).toEqual(['before', 'after']);
      await pair.a.unsubscribe(channel);
      await pair.b.unsubscribe(fence);
    });

    it('runs no handler after unsubscribe() was called, even for a message already in flight', async () => {
      const channel = fresh('inflight');
      const fence = fresh('fence');
      const onB = inbox();
      const fenceB = inbox();
      await pair.b.subscribe(channel, onB.handler);
      await pair.b.subscribe(fence, fenceB.handler);
      // Published first, but not yet delivered when b unsubscribes in the same tick.
      const published = pair.a.publish(channel, 'in-flight');
      const unsubscribed = pair.b.unsubscribe(channel);
      await Promise.all([published, unsubscribed]);
      await pair.a.publish(fence, 'fence');
      await until('b got the fence', () => fenceB.got.includes('fence'));
      expect(onB.got).toEqual([]);
      await pair.b.unsubscribe(fence);
    });
  });

  describe('room history', () => {
    it('assigns offsets 1..100 once each under 100 concurrent appends from two nodes', async () => {
      const room = fresh('room');
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          (i % 2 === 0 ? pair.a : pair.b).appendHistory(room, `m${i}`, hist),
        ),
      );
      const offsets = results.map((r) => r.offset).sort((x, y) => x - y);
      expect(offsets).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      const epochs = new Set(results.map((r) => r.epoch));
      expect(epochs.size).toBe(1);

      const h = await pair.b.history(room);
      expect(h).toMatchObject({ epoch: results[0]?.epoch, offset: 100, complete: true });
      expect(h.messages.map((m) => m.offset)).toEqual(offsets);
      // Each message sits at the offset its append was given.
      const byOffset = new Map(h.messages.map((m) => [m.offset, m.data]));
      results.forEach((r, i) => {
        expect(byOffset.get(r.offset)).toBe(`m${i}`);
      });
    });

    it('keeps the newest maxLength messages and is incomplete for an older offset', async () => {
      const room = fresh('trim');
      let epoch = '';
      for (let i = 1; i <= 10; i++) {
        ({ epoch } = await pair.a.appendHistory(room, `m${i}`, { maxLength: 3, ttlMs: 60_000 }));
      }
      const all = await pair.b.history(room);
      expect(all.epoch).toBe(epoch);
      expect(all.offset).toBe(10);
      expect(all.messages).toEqual([
        { offset: 8, data: 'm8' },
        { offset: 9, data: 'm9' },
        { offset: 10, data: 'm10' },
      ]);
      // Offsets 1..7 are gone, so "everything" is not the whole history.
      expect(all.complete).toBe(false);

      const tooOld = await pair.b.history(room, { offset: 6, epoch });
      expect(tooOld.complete).toBe(false);
      expect(tooOld.messages.map((m) => m.offset)).toEqual([8, 9, 10]);
    });

    it('resumes from a kept offset with exactly the missed messages', async () => {
      const room = fresh('resume');
      let epoch = '';
      for (let i = 1; i <= 10; i++) {
        ({ epoch } = await pair.a.appendHistory(room, `m${i}`, { maxLength: 3, ttlMs: 60_000 }));
      }
      // Offset 7 was seen; 8..10 are kept: nothing is missing.
      const fromOldest = await pair.b.history(room, { offset: 7, epoch });
      expect(fromOldest).toEqual({
        epoch,
        offset: 10,
        complete: true,
        messages: [
          { offset: 8, data: 'm8' },
          { offset: 9, data: 'm9' },
          { offset: 10, data: 'm10' },
        ],
      });
      const fromMiddle = await pair.b.history(room, { offset: 9, epoch });
      expect(fromMiddle.complete).toBe(true);
      expect(fromMiddle.messages).toEqual([{ offset: 10, data: 'm10' }]);
      const upToDate = await pair.b.history(room, { offset: 10, epoch });
      expect(upToDate).toMatchObject({ complete: true, messages: [], offset: 10 });
    });

    it('is incomplete for an offset of another epoch, or one ahead of the newest', async () => {
      const room = fresh('epoch');
      for (let i = 1; i <= 3; i++) await pair.a.appendHistory(room, `m${i}`, hist);
      const other = await pair.b.history(room, { offset: 2, epoch: 'some-other-epoch' });
      expect(other.complete).toBe(false);
      expect(other.messages.map((m) => m.data)).toEqual(['m1', 'm2', 'm3']);
      const ahead = await pair.b.history(room, { offset: 9, epoch: other.epoch });
      expect(ahead.complete).toBe(false);
      expect(ahead.messages).toHaveLength(3);
    });

    it('lets a client that read an empty room resume completely from offset 0', async () => {
      const room = fresh('empty');
      const before = await pair.b.history(room);
      expect(before).toMatchObject({ offset: 0, messages: [], complete: true });
      const appended = await pair.a.appendHistory(room, 'first', hist);
      expect(appended).toEqual({ offset: 1, epoch: before.epoch });
      const after = await pair.b.history(room, { offset: 0, epoch: before.epoch });
      expect(after).toMatchObject({ complete: true, messages: [{ offset: 1, data: 'first' }] });
    });

    it("starts a new epoch at offset 1 once the room's history expired", async () => {
      const room = fresh('ttl');
      const ttl = { maxLength: 10, ttlMs: pair.shortMs };
      await pair.a.appendHistory(room, 'a', ttl);
      const old = await pair.a.appendHistory(room, 'b', ttl);
      expect(old.offset).toBe(2);
      pair.elapse(pair.shortMs);
      const now = await until('the room to expire', async () => {
        const h = await pair.b.history(room);
        return h.epoch !== old.epoch && h;
      });
      expect(now).toMatchObject({ offset: 0, messages: [] });
      const resumed = await pair.b.history(room, { offset: 2, epoch: old.epoch });
      expect(resumed.complete).toBe(false);
      const next = await pair.a.appendHistory(room, 'c', hist);
      expect(next).toEqual({ offset: 1, epoch: now.epoch });
    });

    it('keeps the epoch of a room with no messages while it is read, and forgets it after', async () => {
      const p = await open({ emptyRoomTtlMs: pair.shortMs * 4 });
      const room = fresh('quiet');
      const first = await p.a.history(room);
      p.elapse(pair.shortMs);
      // Read again before the empty-room TTL ran out: same epoch, TTL restarted.
      expect((await p.b.history(room)).epoch).toBe(first.epoch);
      p.elapse(pair.shortMs * 4);
      await until('the quiet room to expire', () => p.roomGone(room));
      expect((await p.a.history(room)).epoch).not.toBe(first.epoch);
    });

    it('rejects a maxLength below 1 and a negative resume offset', async () => {
      await expect(pair.a.appendHistory('r', 'x', { maxLength: 0, ttlMs: 1000 })).rejects.toThrow(
        RangeError,
      );
      await expect(pair.a.history('r', { offset: -1, epoch: 'e' })).rejects.toThrow(RangeError);
    });
  });

  describe('queue', () => {
    it('enqueue, consume and ack move a message through, counted by queueDepth', async () => {
      const { a, b } = await open();
      expect(await a.queueDepth()).toEqual({ pending: 0, deadLetters: 0 });
      const id = await a.enqueue('{"device":"d1"}');
      expect(await b.queueDepth()).toEqual({ pending: 1, deadLetters: 0 });

      const taken = await b.consume('c1', { count: 10, blockMs: 0, retryAfterMs: NEVER_MS });
      expect(taken).toEqual([{ id, data: '{"device":"d1"}', attempts: 1 }]);
      // In flight still counts as pending.
      expect(await a.queueDepth()).toEqual({ pending: 1, deadLetters: 0 });
      expect(await a.consume('c2', { count: 10, blockMs: 0, retryAfterMs: NEVER_MS })).toEqual([]);

      await b.ack(id);
      expect(await a.queueDepth()).toEqual({ pending: 0, deadLetters: 0 });
    });

    it('refuses a message over maxQueueLength (QueueFullError) and keeps those it accepted', async () => {
      const { a, b } = await open({ maxQueueLength: 2 });
      const first = await a.enqueue('one');
      await a.enqueue('two');
      const err = await b.enqueue('three').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QueueFullError);
      expect((err as QueueFullError).code).toBe('PB_QUEUE_FULL');
      // Nothing accepted was dropped to make room.
      const taken = await b.consume('c1', { count: 10, blockMs: 0, retryAfterMs: NEVER_MS });
      expect(taken.map((m) => m.data)).toEqual(['one', 'two']);
      // In flight still counts; acknowledged, it frees its place.
      await expect(a.enqueue('three')).rejects.toBeInstanceOf(QueueFullError);
      await b.ack(first);
      await a.enqueue('three');
      expect((await a.queueDepth()).pending).toBe(2);
    });

    it('delivers an unacknowledged message again after retryAfterMs, with attempts 2', async () => {
      const p = await open();
      const id = await p.a.enqueue('retry-me');
      const first = await p.a.consume('c1', { count: 1, blockMs: 0, retryAfterMs: p.shortMs });
      expect(first).toEqual([{ id, data: 'retry-me', attempts: 1 }]);
      // Not due under a long retry delay.
      expect(await p.b.consume('c2', { count: 1, blockMs: 0, retryAfterMs: NEVER_MS })).toEqual([]);

      p.elapse(p.shortMs);
      const again = await until('the retry', async () => {
        const got = await p.b.consume('c2', { count: 1, blockMs: 0, retryAfterMs: p.shortMs });
        return got.length > 0 && got;
      });
      expect(again).toEqual([{ id, data: 'retry-me', attempts: 2 }]);
      p.elapse(p.shortMs);
      const third = await until('the second retry', async () => {
        const got = await p.a.consume('c1', { count: 1, blockMs: 0, retryAfterMs: p.shortMs });
        return got.length > 0 && got;
      });
      expect(third).toEqual([{ id, data: 'retry-me', attempts: 3 }]);
      await p.a.ack(id);
      expect((await p.a.queueDepth()).pending).toBe(0);
    });

    it('dead-letters a message: out of the queue for good, listed with its reason', async () => {
      const p = await open();
      const id = await p.a.enqueue('doomed');
      const [msg] = await p.a.consume('c1', { count: 1, blockMs: 0, retryAfterMs: p.shortMs });
      expect(msg).toBeDefined();
      await p.b.deadLetter(msg as QueuedMessage, 'device offline');
      expect(await p.a.queueDepth()).toEqual({ pending: 0, deadLetters: 1 });
      expect(await p.a.deadLetters(10)).toEqual([
        { id, data: 'doomed', reason: 'device offline', attempts: 1 },
      ]);
      p.elapse(p.shortMs);
      // The retry delay has passed; a fence message proves the consume saw the queue.
      const fence = await p.a.enqueue('fence');
      const after = await p.b.consume('c2', { count: 10, blockMs: 0, retryAfterMs: p.shortMs });
      expect(after.map((m) => m.id)).toEqual([fence]);
    });

    it('keeps only the newest maxDeadLetters, newest first', async () => {
      const p = await open({ maxDeadLetters: 3 });
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await p.a.enqueue(`m${i}`));
      const taken = await p.a.consume('c1', { count: 5, blockMs: 0, retryAfterMs: NEVER_MS });
      expect(taken).toHaveLength(5);
      for (const m of taken) await p.a.deadLetter(m, `reason ${m.data}`);
      expect(await p.b.queueDepth()).toEqual({ pending: 0, deadLetters: 3 });
      const listed = await p.b.deadLetters(10);
      expect(listed.map((d) => d.id)).toEqual([ids[4], ids[3], ids[2]]);
      expect(listed[0]).toEqual({ id: ids[4], data: 'm4', reason: 'reason m4', attempts: 1 });
      expect((await p.b.deadLetters(1)).map((d) => d.id)).toEqual([ids[4]]);
    });

    it('never gives the same new message to two consumers', async () => {
      const p = await open();
      const ids = new Set<string>();
      for (let i = 0; i < 20; i++) ids.add(await (i % 2 ? p.a : p.b).enqueue(`m${i}`));
      const seen: string[] = [];
      const take = (broker: Broker, consumer: string) =>
        broker.consume(consumer, { count: 3, blockMs: 0, retryAfterMs: NEVER_MS });
      while (seen.length < 20) {
        const [x, y] = await Promise.all([take(p.a, 'c1'), take(p.b, 'c2')]);
        if (x.length + y.length === 0) break;
        for (const m of [...x, ...y]) {
          expect(m.attempts).toBe(1);
          seen.push(m.id);
        }
      }
      expect(seen).toHaveLength(20);
      expect(new Set(seen)).toEqual(ids);
    });

    it('returns [] from a blocking consume when nothing arrives within blockMs', async () => {
      const p = await open();
      expect(await p.a.consume('c1', { count: 5, blockMs: 50, retryAfterMs: NEVER_MS })).toEqual(
        [],
      );
    });

    it('wakes a blocked consume for a message enqueued while it waits', async () => {
      const p = await open();
      const waiting = p.a.consume('c1', { count: 5, blockMs: 10_000, retryAfterMs: NEVER_MS });
      const id = await p.b.enqueue('late');
      expect(await waiting).toEqual([{ id, data: 'late', attempts: 1 }]);
    });

    it('ends a blocked consume with [] on close, and rejects calls after close', async () => {
      const p = await open();
      const waiting = p.a.consume('c1', { count: 1, blockMs: 10_000, retryAfterMs: NEVER_MS });
      // Let the consume reach its blocking wait before closing.
      await new Promise((resolve) => setImmediate(resolve));
      await p.a.close();
      expect(await waiting).toEqual([]);
      await expect(p.a.enqueue('x')).rejects.toThrow(BrokerUnavailableError);
      // The other node is unaffected.
      expect(await p.b.enqueue('y')).toEqual(expect.any(String));
    });
  });
});

describe('MemoryBroker', () => {
  it('restarts the TTL of a room with no messages on each read', async () => {
    let nowMs = 0;
    const broker = new MemoryBroker({ nowMs: () => nowMs, emptyRoomTtlMs: 1000 });
    const first = await broker.history('quiet');
    for (let i = 0; i < 5; i++) {
      nowMs += 900;
      expect((await broker.history('quiet')).epoch).toBe(first.epoch);
    }
    nowMs += 1000;
    expect((await broker.history('quiet')).epoch).not.toBe(first.epoch);
    await broker.close();
  });

  it('keeps a node its own subscriptions when another node shares its backend', async () => {
    const a = new MemoryBroker();
    const b = new MemoryBroker({ shareWith: a });
    const onA = inbox();
    await a.subscribe('ch', onA.handler);
    await b.subscribe('ch', () => {});
    await b.close();
    await b.publish('ch', 'x').catch(() => {});
    await a.publish('ch', 'y');
    await until('a got "y"', () => onA.got.includes('y'));
    expect(onA.got).toEqual(['y']);
    await a.close();
  });
});

describe('createBroker', () => {
  it('gives a memory broker without a URL', async () => {
    const broker = await createBroker();
    expect(broker).toBeInstanceOf(MemoryBroker);
    await broker.close();
  });

  it('rejects a URL that is not redis:// with PB_USAGE', async () => {
    const err = await createBroker('http://127.0.0.1:6379').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PushbenchError);
    expect((err as PushbenchError).code).toBe('PB_USAGE');
  });

  it('names the URL and the cause in one line when Redis does not answer', async () => {
    const port = await freePort();
    const url = `redis://:secret@127.0.0.1:${port}`;
    const err = await createBroker(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerUnavailableError);
    expect((err as Error).message).toBe(
      `cannot reach Redis at redis://:***@127.0.0.1:${port}: ECONNREFUSED`,
    );
  });

  it('gives a Redis broker for a redis:// URL', async () => {
    const broker = await createBroker(redisUrl, { keyPrefix: `${runPrefix}factory:` });
    expect(broker).toBeInstanceOf(RedisBroker);
    await broker.close();
  });
});

describe('RedisBroker', () => {
  it('stores a room and the queue under the documented keys', async () => {
    const keyPrefix = `${runPrefix}layout:`;
    const broker = await connectRedis(keyPrefix);
    try {
      await broker.appendHistory('lobby', 'x', hist);
      const id = await broker.enqueue('q');
      const msg = (await broker.consume('c', { count: 1, blockMs: 0, retryAfterMs: 0 }))[0];
      expect(msg?.id).toBe(id);
      await broker.deadLetter(msg as QueuedMessage, 'r');
      const keys = (await admin().keys(`${keyPrefix}*`)).sort();
      expect(keys).toEqual(
        ['queue', 'queue:dead', 'room:{lobby}:epoch', 'room:{lobby}:log', 'room:{lobby}:seq'].map(
          (k) => keyPrefix + k,
        ),
      );
      const ttl = await admin().pttl(`${keyPrefix}room:{lobby}:log`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(hist.ttlMs);
    } finally {
      await broker.close();
    }
  });

  it('restarts the TTL of a room with no messages on each read', async () => {
    const keyPrefix = `${runPrefix}quiet:`;
    const broker = await connectRedis(keyPrefix, { emptyRoomTtlMs: 60_000 });
    const epochKey = `${keyPrefix}room:{quiet}:epoch`;
    try {
      const first = await broker.history('quiet');
      await admin().pexpire(epochKey, 5000);
      expect((await broker.history('quiet')).epoch).toBe(first.epoch);
      expect(await admin().pttl(epochKey)).toBeGreaterThan(5000);
      // Once the room has a message, reads leave its TTL alone.
      await broker.appendHistory('quiet', 'x', { maxLength: 10, ttlMs: 5000 });
      await broker.history('quiet');
      expect(await admin().pttl(epochKey)).toBeLessThanOrEqual(5000);
    } finally {
      await broker.close();
    }
  });

  it('gives a new epoch when Redis lost the room (keys deleted, as after a restart)', async () => {
    const keyPrefix = `${runPrefix}lost:`;
    const broker = await connectRedis(keyPrefix);
    try {
      for (let i = 0; i < 3; i++) await broker.appendHistory('r', `m${i}`, hist);
      const before = await broker.history('r');
      await admin().del(...['epoch', 'seq', 'log'].map((k) => `${keyPrefix}room:{r}:${k}`));
      const after = await broker.history('r', { offset: 3, epoch: before.epoch });
      expect(after.epoch).not.toBe(before.epoch);
      expect(after).toMatchObject({ complete: false, offset: 0, messages: [] });
      // Only the epoch was lost: deleting just the epoch also restarts offsets.
      await broker.appendHistory('r', 'n1', hist);
      await admin().del(`${keyPrefix}room:{r}:epoch`);
      expect((await broker.appendHistory('r', 'n2', hist)).offset).toBe(1);
    } finally {
      await broker.close();
    }
  });

  it('recreates the queue group when Redis lost the stream', async () => {
    const keyPrefix = `${runPrefix}nogroup:`;
    const broker = await connectRedis(keyPrefix);
    try {
      await admin().del(`${keyPrefix}queue`);
      const id = await broker.enqueue('after-loss');
      const got = await broker.consume('c', { count: 1, blockMs: 0, retryAfterMs: NEVER_MS });
      expect(got).toEqual([{ id, data: 'after-loss', attempts: 1 }]);
    } finally {
      await broker.close();
    }
  });

  it('wakes a consume blocked inside XREADGROUP without stalling other commands', async () => {
    const keyPrefix = `${runPrefix}blocked:`;
    const broker = await connectRedis(keyPrefix);
    try {
      const waiting = broker.consume('blocker', {
        count: 1,
        blockMs: 20_000,
        retryAfterMs: NEVER_MS,
      });
      await until('a client blocked in XREADGROUP', async () =>
        String(await admin().call('CLIENT', 'LIST')).includes('cmd=xreadgroup'),
      );
      // The same broker still answers while its consumer is blocked.
      await broker.appendHistory('r', 'x', hist);
      const id = await broker.enqueue('wake-up');
      expect(await waiting).toEqual([{ id, data: 'wake-up', attempts: 1 }]);
    } finally {
      await broker.close();
    }
  });

  it('fails fast while Redis is unreachable and resumes pub/sub once it is back', async () => {
    const proxy = await TcpProxy.start(redisUrl);
    const keyPrefix = `${runPrefix}outage:`;
    const viaProxy = await connectRedis(keyPrefix, {}, proxy.url);
    const direct = await connectRedis(keyPrefix);
    try {
      const got = inbox();
      await viaProxy.subscribe('news', got.handler);
      await direct.publish('news', 'one');
      await until('"one"', () => got.got.includes('one'));

      await proxy.stop();
      const err = await until('commands to fail', () =>
        viaProxy.appendHistory('r', 'x', hist).then(
          () => false,
          (e: unknown) => e,
        ),
      );
      expect(err).toBeInstanceOf(BrokerUnavailableError);
      expect((err as Error).message).toMatch(/^Redis at redis:\/\/127\.0\.0\.1:\d+ is unavailable/);
      expect((err as Error).message).not.toContain('\n');
      await expect(viaProxy.enqueue('x')).rejects.toThrow(BrokerUnavailableError);
      await expect(viaProxy.subscribe('other', () => {})).rejects.toThrow(BrokerUnavailableError);

      await proxy.restart();
      await until(
        'commands to work again',
        () =>
          viaProxy.history('r').then(
            () => true,
            () => false,
          ),
        10_000,
      );
      // The subscriber connection resubscribes by itself; publish until it is back.
      await until(
        'the subscription to resume',
        async () => {
          await direct.publish('news', 'two');
          return got.got.includes('two');
        },
        10_000,
      );
    } finally {
      await viaProxy.close();
      await direct.close();
      await proxy.stop();
    }
  });
});

/** A port nothing listens on (it did a moment ago). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** A TCP proxy to Redis that can be cut (all connections reset) and restored on the same port. */
class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly target: URL,
    private port: number,
  ) {}

  static async start(targetUrl: string): Promise<TcpProxy> {
    const proxy = new TcpProxy(new URL(targetUrl), 0);
    await proxy.restart();
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const server = createServer((client) => {
      const upstream = tcpConnect(Number(this.target.port || 6379), this.target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    const address = server.address();
    if (address !== null && typeof address !== 'string') this.port = address.port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}
