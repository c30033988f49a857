/**
 * The queue across a Redis SIGKILL, on a redis-server of the test's own (never
 * the machine's): with an append-only file fsynced before every answer, a
 * restart with its data loses no accepted message; without persistence the
 * broker says at connect what a restart would lose.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBroker } from '../../server/backends.js';
import type { Broker } from '../../server/broker.js';
import { ManagedRedis } from '../../topology/managed-redis.js';
import { ensureCommand } from '../setup/debian.js';

beforeAll(async () => {
  await ensureCommand('redis-server', 'redis-server');
}, 600_000);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until<T>(probe: () => Promise<T | undefined>, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the queue across a Redis SIGKILL', () => {
  it('appendonly (fsync always): kill -9 and a restart with its data lose no accepted message', async () => {
    const redis = await ManagedRedis.start({ appendonly: true });
    cleanups.push(() => redis.stop());
    const broker: Broker = await createBroker(redis.url, { keyPrefix: 'aof:' });
    cleanups.push(() => broker.close());
    expect(broker.persistenceWarning).toBeUndefined();
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) ids.push(await broker.enqueue(`m${i}`));

    await redis.kill();
    await redis.start('kept');
    // The client reconnects on its own; every accepted message is still queued.
    const depth = await until(async () => (await broker.queueDepth()).pending, 10_000);
    expect(depth).toBe(200);
    const taken = await broker.consume('c1', { count: 500, blockMs: 0, retryAfterMs: 60_000 });
    expect(taken.map((m) => m.id)).toEqual(ids);
  }, 30_000);

  it('without persistence the broker says at connect that a restart loses every queued message', async () => {
    const redis = await ManagedRedis.start({ appendonly: false });
    cleanups.push(() => redis.stop());
    const broker = await createBroker(redis.url, { keyPrefix: 'none:' });
    cleanups.push(() => broker.close());
    expect(broker.persistenceWarning).toMatch(
      /^Redis at redis:\/\/127\.0\.0\.1:\d+ persists nothing \(no append-only file, no snapshots\): a restart loses every queued message$/,
    );
  }, 30_000);
});
