/**
 * What a node must survive: its Redis killed and started again empty. The
 * devices stay connected to the node the whole time; once Redis is back the
 * node re-registers every one of them at once, not one sweep bucket per tick
 * over a heartbeat interval, so a push finds them. Uses a redis-server of the
 * test's own (never the machine's); the Debian package is installed when missing.
 */
import { once } from 'node:events';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { signToken } from '../../server/token.js';
import { startTestNode, TEST_API_KEY, TEST_SECRET } from '../helpers/node.js';
import { ensureCommand } from '../setup/debian.js';

beforeAll(async () => {
  await ensureCommand('redis-server', 'redis-server');
}, 600_000);

import { ManagedRedis } from '../../topology/managed-redis.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

describe('Redis killed and started again empty', () => {
  it('the node re-registers every connected device as soon as Redis is back', async () => {
    const redis = await ManagedRedis.start({ appendonly: false });
    cleanups.push(() => redis.stop());
    // Heartbeats (and so the sweep's refresh of each entry) once a minute: only the
    // re-check on reconnect can bring the entries back within this test.
    const started = await startTestNode({ redisUrl: redis.url, nodeId: 'n1' });
    cleanups.push(() => started.stop());
    const { registry } = started.backends;
    const devices: WebSocket[] = [];
    for (let i = 0; i < 20; i++) {
      const token = signToken(
        { deviceId: `d${i}`, accountId: 'a', expiresAtSec: Date.now() / 1000 + 600 },
        TEST_SECRET,
      );
      const ws = new WebSocket(`${started.address.wsUrl}?token=${token}`);
      await once(ws, 'open');
      devices.push(ws);
    }
    cleanups.push(async () => {
      for (const ws of devices) ws.terminate();
    });
    expect(await until(async () => (await registry.lookup('d19')) !== undefined, 5000)).toBe(true);

    await redis.kill();
    await redis.start('empty');
    // Back, and empty; the client reconnects within a second or so.
    const back = await until(async () => {
      const found = await Promise.all(
        devices.map((_, i) => registry.lookup(`d${i}`).catch(() => undefined)),
      );
      return found.every((e) => e?.nodeId === 'n1');
    }, 8000);
    expect(back).toBe(true);
    expect(started.node.metrics.total('pushbench_registry_rechecks_total')).toBeGreaterThanOrEqual(
      1,
    );
    for (const ws of devices) expect(ws.readyState).toBe(WebSocket.OPEN);

    // A push finds a device that stayed connected all along.
    const res = await fetch(`${started.address.httpUrl}/v1/push/d7`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ payload: { hi: 1 } }),
    });
    expect(res.status).toBe(200);
  }, 30_000);
});
