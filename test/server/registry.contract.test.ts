import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { PushbenchError, RegistryUnavailableError } from '../../core/errors.js';
import { createRegistry } from '../../server/backends.js';
import type { PushRegistry, RegisteredDevice, RegistryEntry } from '../../server/registry.js';
import { MemoryRegistry } from '../../server/registry-memory.js';
import { RedisRegistry } from '../../server/registry-redis.js';

// CI starts a Redis server; without one the Redis half fails (never skips).
const redisUrl = process.env.PUSHBENCH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const runPrefix = `pushbench-test:${process.pid}-${randomUUID().slice(0, 8)}:`;
const LONG_TTL_MS = 60_000;

/** What one backend gives a test: two registries sharing one store, as two nodes see it. */
interface Harness {
  a: PushRegistry;
  b: PushRegistry;
  /** A TTL short enough to wait out, long enough for a few commands to run first. */
  shortTtlMs: number;
  /** Lets `shortTtlMs` pass; resolves once `gone()` holds, fails if it never does. */
  outlive(gone: () => Promise<boolean>): Promise<void>;
  close(): Promise<void>;
}

interface Backend {
  name: string;
  open(): Promise<Harness>;
}

const memory: Backend = {
  name: 'memory',
  async open() {
    let nowMs = 1_700_000_000_000;
    const registry = new MemoryRegistry({ nowMs: () => nowMs });
    const shortTtlMs = 1000;
    return {
      a: registry,
      b: registry,
      shortTtlMs,
      async outlive(gone) {
        nowMs += shortTtlMs;
        if (!(await gone())) throw new Error('still registered after its TTL passed');
      },
      close: () => registry.close(),
    };
  },
};

async function connectRedis(keyPrefix: string): Promise<RedisRegistry> {
  try {
    return await RedisRegistry.connect({ url: redisUrl, keyPrefix });
  } catch (err) {
    throw new Error(
      `the Redis half of the registry contract needs a Redis server at ${redisUrl} ` +
        `(CI starts one; locally run \`redis-server\`, or set PUSHBENCH_TEST_REDIS_URL): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

let testSeq = 0;
const redis: Backend = {
  name: 'redis',
  async open() {
    // A prefix per test: tests cannot see each other's keys.
    const keyPrefix = `${runPrefix}${++testSeq}:`;
    const a = await connectRedis(keyPrefix);
    const b = await connectRedis(keyPrefix);
    return {
      a,
      b,
      // Real time: long enough that register-then-refresh never straddles it.
      shortTtlMs: 300,
      async outlive(gone) {
        await vi.waitFor(
          async () => {
            if (!(await gone())) throw new Error('still registered after its TTL passed');
          },
          { timeout: 5000, interval: 25 },
        );
      },
      async close() {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
};

async function deleteTestKeys(): Promise<void> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch {
    client.disconnect();
    return; // the failing suites already say why
  }
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${runPrefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await client.quit();
}

afterAll(deleteTestKeys);

function entry(nodeId: string, connId: string, accountId = 'acct-1'): RegistryEntry {
  return { nodeId, connId, accountId, connectedAtMs: 1_700_000_000_000 };
}

function ids(devices: RegisteredDevice[]): string[] {
  return devices.map((device) => device.deviceId).sort();
}

describe.each([memory, redis])('push registry contract ($name)', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await backend.open();
  });
  afterEach(async () => {
    await h?.close();
  });

  it('records a device and finds it by id', async () => {
    expect(await h.a.register('d1', entry('node-a', 'c1'), LONG_TTL_MS)).toBeUndefined();
    expect(await h.a.lookup('d1')).toEqual(entry('node-a', 'c1'));
    expect(await h.b.lookup('d1')).toEqual(entry('node-a', 'c1'));
    expect(await h.a.lookup('nobody')).toBeUndefined();
  });

  it("keeps the holder's peer address when it has one, and names none when it has not", async () => {
    const withPeer = { ...entry('node-a', 'c1'), peer: '10.100.1.2:40123' };
    await h.a.register('d1', withPeer, LONG_TTL_MS);
    expect(await h.b.lookup('d1')).toEqual(withPeer);
    expect(await h.b.register('d1', entry('node-b', 'c2'), LONG_TTL_MS)).toEqual(withPeer);
    expect(await h.a.lookup('d1')).toEqual(entry('node-b', 'c2'));
    expect(Object.keys((await h.a.lookup('d1'))!)).not.toContain('peer');
  });

  it('returns the replaced entry when the device connects again, on any node', async () => {
    await h.a.register('d1', entry('node-a', 'c1'), LONG_TTL_MS);
    expect(await h.a.register('d1', entry('node-a', 'c2'), LONG_TTL_MS)).toEqual(
      entry('node-a', 'c1'),
    );
    expect(await h.b.register('d1', entry('node-b', 'c3'), LONG_TTL_MS)).toEqual(
      entry('node-a', 'c2'),
    );
    expect(await h.a.lookup('d1')).toEqual(entry('node-b', 'c3'));
  });

  it('does not report a replacement when the same connection registers again', async () => {
    await h.a.register('d1', entry('node-a', 'c1'), LONG_TTL_MS);
    expect(await h.a.register('d1', entry('node-a', 'c1'), LONG_TTL_MS)).toBeUndefined();
    expect(await h.a.lookup('d1')).toEqual(entry('node-a', 'c1'));
  });

  it('keeps the entry when a replaced connection unregisters (compare-and-delete)', async () => {
    await h.a.register('d1', entry('node-a', 'old'), LONG_TTL_MS);
    await h.b.register('d1', entry('node-b', 'new'), LONG_TTL_MS);
    // The old socket closes after its replacement registered: Zuul deleted here.
    expect(await h.a.unregister('d1', 'old')).toBe(false);
    expect(await h.a.lookup('d1')).toEqual(entry('node-b', 'new'));
    expect(ids(await h.a.accountDevices('acct-1'))).toEqual(['d1']);

    expect(await h.b.unregister('d1', 'new')).toBe(true);
    expect(await h.a.lookup('d1')).toBeUndefined();
    expect(await h.a.accountDevices('acct-1')).toEqual([]);
    expect(await h.b.nodeDevices('node-b')).toEqual([]);
    expect(await h.b.unregister('d1', 'new')).toBe(false);
  });

  it('refreshes only entries that still point to the given connection', async () => {
    await h.a.register('d1', entry('node-a', 'c1'), h.shortTtlMs);
    await h.a.register('d2', entry('node-a', 'c2'), h.shortTtlMs);
    await h.b.register('d1', entry('node-b', 'c1b'), h.shortTtlMs);
    const result = await h.a.refresh(
      [
        { deviceId: 'd1', connId: 'c1' }, // replaced by c1b: must not keep c1b alive
        { deviceId: 'd2', connId: 'c2' },
        { deviceId: 'd3', connId: 'c3' }, // never registered
      ],
      LONG_TTL_MS,
    );
    expect(result).toEqual({
      refreshed: 1,
      stale: [
        { deviceId: 'd1', connId: 'c1' },
        { deviceId: 'd3', connId: 'c3' },
      ],
    });
    await h.outlive(async () => (await h.a.lookup('d1')) === undefined);
    expect(await h.a.lookup('d2')).toEqual(entry('node-a', 'c2'));
    expect(ids(await h.a.accountDevices('acct-1'))).toEqual(['d2']);
    expect(await h.a.refresh([], LONG_TTL_MS)).toEqual({ refreshed: 0, stale: [] });
  });

  it('refreshes a sweep larger than one batch and names each stale item', async () => {
    const items = Array.from({ length: 1203 }, (_, i) => ({ deviceId: `d${i}`, connId: `c${i}` }));
    await Promise.all(
      items.map((item, i) =>
        // Every hundredth device is left out, so its refresh is stale.
        i % 100 === 7
          ? undefined
          : h.a.register(item.deviceId, entry('node-a', item.connId), LONG_TTL_MS),
      ),
    );
    const result = await h.b.refresh(items, LONG_TTL_MS);
    const expectedStale = items.filter((_, i) => i % 100 === 7);
    expect(result.stale).toEqual(expectedStale);
    expect(result.refreshed).toBe(items.length - expectedStale.length);
    expect((await h.a.nodeDevices('node-a')).length).toBe(result.refreshed);
  });

  it('forgets an entry whose TTL passed, in lookups and in both indexes', async () => {
    await h.a.register('dead', entry('node-a', 'c1'), h.shortTtlMs);
    await h.b.register('alive', entry('node-b', 'c2'), LONG_TTL_MS);
    expect(ids(await h.a.accountDevices('acct-1'))).toEqual(['alive', 'dead']);
    await h.outlive(async () => (await h.a.lookup('dead')) === undefined);
    expect(ids(await h.a.accountDevices('acct-1'))).toEqual(['alive']);
    expect(await h.a.nodeDevices('node-a')).toEqual([]);
    expect(await h.a.unregister('dead', 'c1')).toBe(false);
    // The device can come back after expiring; nothing was replaced.
    expect(await h.a.register('dead', entry('node-a', 'c3'), LONG_TTL_MS)).toBeUndefined();
  });

  it("lists an account's devices across nodes and no other account's", async () => {
    await h.a.register('phone', entry('node-a', 'c1', 'alice'), LONG_TTL_MS);
    await h.b.register('laptop', entry('node-b', 'c2', 'alice'), LONG_TTL_MS);
    await h.b.register('tablet', entry('node-b', 'c3', 'bob'), LONG_TTL_MS);
    for (const registry of [h.a, h.b]) {
      const alice = await registry.accountDevices('alice');
      expect(ids(alice)).toEqual(['laptop', 'phone']);
      expect(alice.find((d) => d.deviceId === 'laptop')?.entry).toEqual(
        entry('node-b', 'c2', 'alice'),
      );
      expect(ids(await registry.accountDevices('bob'))).toEqual(['tablet']);
      expect(await registry.accountDevices('nobody')).toEqual([]);
    }
    // A device re-registered under another account leaves the first one.
    await h.a.register('tablet', entry('node-a', 'c4', 'alice'), LONG_TTL_MS);
    expect(ids(await h.b.accountDevices('alice'))).toEqual(['laptop', 'phone', 'tablet']);
    expect(await h.b.accountDevices('bob')).toEqual([]);
  });

  it('lists what each node holds, and a device that moved leaves its old node', async () => {
    await h.a.register('d1', entry('node-a', 'c1'), LONG_TTL_MS);
    await h.a.register('d2', entry('node-a', 'c2'), LONG_TTL_MS);
    await h.b.register('d3', entry('node-b', 'c3'), LONG_TTL_MS);
    expect(ids(await h.b.nodeDevices('node-a'))).toEqual(['d1', 'd2']);
    await h.b.register('d1', entry('node-b', 'c4'), LONG_TTL_MS);
    expect(ids(await h.a.nodeDevices('node-a'))).toEqual(['d2']);
    expect(ids(await h.a.nodeDevices('node-b'))).toEqual(['d1', 'd3']);
  });

  it('ends consistent after 50 connections of one device race to register and unregister', async () => {
    const count = 50;
    const replaced: string[] = [];
    const unregistered: string[] = [];
    // Even connections stay; odd ones unregister right after registering. The
    // two registries are two clients, so their commands interleave in Redis.
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const registry = i % 2 === 0 ? h.a : h.b;
        const connId = `c${i}`;
        const previous = await registry.register(
          'racer',
          entry(i % 2 === 0 ? 'node-a' : 'node-b', connId),
          LONG_TTL_MS,
        );
        if (previous) replaced.push(previous.connId);
        if (i % 2 === 1 && (await registry.unregister('racer', connId))) unregistered.push(connId);
      }),
    );
    const final = await h.a.lookup('racer');
    // Every connection stopped being current exactly once — replaced, removed
    // by its own unregister — or is still current. A non-atomic get-then-set
    // would hand one replaced entry to two callers; a non-atomic
    // compare-and-delete would remove a successor.
    const ended = [...replaced, ...unregistered, ...(final ? [final.connId] : [])].sort();
    expect(ended).toEqual(Array.from({ length: count }, (_, i) => `c${i}`).sort());
    if (final) {
      expect(Number(final.connId.slice(1)) % 2).toBe(0);
      expect(ids(await h.b.accountDevices('acct-1'))).toEqual(['racer']);
      expect(ids(await h.b.nodeDevices(final.nodeId))).toEqual(['racer']);
    } else {
      expect(await h.b.accountDevices('acct-1')).toEqual([]);
    }
  });

  it('refuses a TTL that is not a positive integer of milliseconds', async () => {
    await expect(h.a.register('d1', entry('node-a', 'c1'), 0)).rejects.toThrow(RangeError);
    await expect(h.a.refresh([{ deviceId: 'd1', connId: 'c1' }], 1.5)).rejects.toThrow(RangeError);
  });
});

describe('memory registry', () => {
  it('drops expired entries in one sweep, without anyone reading them', async () => {
    let nowMs = 0;
    const registry = new MemoryRegistry({ nowMs: () => nowMs });
    await registry.register('d1', entry('node-a', 'c1'), 100);
    await registry.register('d2', entry('node-a', 'c2'), 500);
    nowMs = 100;
    expect(registry.sweep()).toBe(1);
    expect(registry.size).toBe(1);
    expect(ids(await registry.nodeDevices('node-a'))).toEqual(['d2']);
  });

  it('is what createRegistry opens without a URL', async () => {
    const registry = await createRegistry();
    expect(registry).toBeInstanceOf(MemoryRegistry);
    await registry.close();
  });
});

/** A TCP port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/**
 * A TCP relay to the test Redis, standing in for Redis going down: `cut` closes
 * it (refused connections), `freeze` keeps connections open but stops
 * forwarding (a hung server or a blackholed link).
 */
class RedisRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private frozen = false;
  port = 0;

  freeze(): void {
    this.frozen = true;
  }

  async start(): Promise<void> {
    const target = new URL(redisUrl);
    this.server = createServer((client) => {
      const upstream = tcpConnect(Number(target.port || 6379), target.hostname);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.on('data', (chunk: Buffer) => {
        if (!this.frozen) upstream.write(chunk);
      });
      upstream.pipe(client);
    });
    const server = this.server;
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    this.port = address.port;
  }

  async cut(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

describe('redis registry', () => {
  let probe: Redis;
  beforeAll(async () => {
    probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    await connectRedis(`${runPrefix}probe:`).then((r) => r.close());
    await probe.connect();
  });
  afterAll(async () => {
    await probe?.quit();
  });

  it('says which URL it cannot reach, and why', async () => {
    const url = `redis://127.0.0.1:${await closedPort()}`;
    const failure = await createRegistry(url).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(RegistryUnavailableError);
    expect((failure as RegistryUnavailableError).code).toBe('PB_REGISTRY_UNAVAILABLE');
    expect((failure as Error).message).toBe(`cannot reach Redis at ${url}: ECONNREFUSED`);
  });

  it('refuses a URL that is not redis:// as a usage error', async () => {
    await expect(createRegistry('http://127.0.0.1:6379')).rejects.toSatisfy(
      (err) => err instanceof PushbenchError && err.code === 'PB_USAGE',
    );
  });

  it('is what createRegistry opens for a redis:// URL', async () => {
    const registry = await createRegistry(redisUrl, { keyPrefix: `${runPrefix}factory:` });
    expect(registry).toBeInstanceOf(RedisRegistry);
    await registry.close();
  });

  it('fails fast with RegistryUnavailableError while Redis is down, and recovers', async () => {
    const relay = new RedisRelay();
    await relay.start();
    const registry = await RedisRegistry.connect({
      url: `redis://127.0.0.1:${relay.port}`,
      keyPrefix: `${runPrefix}outage:`,
    });
    try {
      await registry.register('d1', entry('node-a', 'c1'), LONG_TTL_MS);
      await relay.cut();
      const failure = await registry.lookup('d1').then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(RegistryUnavailableError);
      expect((failure as Error).message).toMatch(
        /^registry unavailable: Redis at redis:\/\/127\.0\.0\.1:\d+ did not answer lookup/,
      );
      await relay.start(); // same port
      await vi.waitFor(async () => expect(await registry.lookup('d1')).toBeDefined(), {
        timeout: 10_000,
        interval: 100,
      });
    } finally {
      await registry.close();
      await relay.cut();
    }
  });

  it('fails with RegistryUnavailableError instead of hanging when Redis stops answering', async () => {
    const relay = new RedisRelay();
    await relay.start();
    const registry = await RedisRegistry.connect({
      url: `redis://127.0.0.1:${relay.port}`,
      keyPrefix: `${runPrefix}hang:`,
      commandTimeoutMs: 200,
    });
    try {
      relay.freeze();
      await expect(registry.unregister('d1', 'c1')).rejects.toThrow(RegistryUnavailableError);
    } finally {
      await relay.cut();
      await registry.close();
    }
  });

  it('keeps expired devices out of the account set and lets index keys expire', async () => {
    const prefix = `${runPrefix}layout:`;
    const registry = await connectRedis(prefix);
    try {
      await registry.register('d1', entry('node-a', 'c1'), 200);
      await registry.register('d2', entry('node-a', 'c2'), LONG_TTL_MS);
      expect(await probe.get(`${prefix}dev:d2`)).toBe(JSON.stringify(entry('node-a', 'c2')));
      expect(await probe.pttl(`${prefix}dev:d1`)).toBeGreaterThan(0);
      expect(await probe.zcard(`${prefix}acct:acct-1`)).toBe(2);
      // Index keys outlive their longest member, then go by themselves.
      expect(await probe.pttl(`${prefix}acct:acct-1`)).toBeGreaterThan(LONG_TTL_MS - 5000);
      expect(await probe.pttl(`${prefix}node:node-a`)).toBeGreaterThan(LONG_TTL_MS - 5000);
      await vi.waitFor(async () => expect(await probe.exists(`${prefix}dev:d1`)).toBe(0), {
        timeout: 5000,
        interval: 25,
      });
      // The expired member is still in the set until someone reads or writes it...
      expect(await probe.zscore(`${prefix}acct:acct-1`, 'd1')).not.toBeNull();
      expect(ids(await registry.accountDevices('acct-1'))).toEqual(['d2']);
      // ...and reading prunes it.
      expect(await probe.zrange(`${prefix}acct:acct-1`, 0, -1)).toEqual(['d2']);
    } finally {
      await registry.close();
    }
  });
});
