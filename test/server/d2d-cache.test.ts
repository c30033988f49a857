/**
 * The d2d target cache in front of a real (in-memory) registry: hits skip the
 * registry; an expired entry is answered at once while one background lookup
 * renews it; a TTL of 0 asks the registry every time.
 */
import { describe, expect, it } from 'vitest';
import { TargetCache } from '../../server/d2d.js';
import { MemoryRegistry } from '../../server/registry-memory.js';

const entry = (nodeId: string) => ({
  nodeId,
  connId: `${nodeId}.1`,
  accountId: 'a',
  connectedAtMs: 0,
});

/** A registry whose lookups are counted and can be held back. */
class SlowRegistry extends MemoryRegistry {
  lookups = 0;
  delayMs = 0;
  override async lookup(deviceId: string) {
    this.lookups++;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    return super.lookup(deviceId);
  }
}

describe('d2d target cache', () => {
  it('answers an expired entry at once and renews it with one background lookup', async () => {
    const registry = new SlowRegistry();
    await registry.register('t', entry('n1'), 60_000);
    let now = 0;
    const cache = new TargetCache(registry, 1000, () => now);
    expect((await cache.lookup('t'))?.nodeId).toBe('n1');
    expect(registry.lookups).toBe(1);
    // The device moved; the cached entry has expired; the registry is slow.
    await registry.register('t', entry('n2'), 60_000);
    registry.delayMs = 200;
    now = 5000;
    const started = Date.now();
    const [a, b] = await Promise.all([cache.lookup('t'), cache.lookup('t')]);
    expect(Date.now() - started).toBeLessThan(100);
    expect([a?.nodeId, b?.nodeId]).toEqual(['n1', 'n1']);
    expect(registry.lookups).toBe(2);
    await new Promise((r) => setTimeout(r, 300));
    expect((await cache.lookup('t'))?.nodeId).toBe('n2');
    expect(registry.lookups).toBe(2);
    expect(cache.hits).toBe(3);
    expect(cache.misses).toBe(1);
  });

  it('with a TTL of 0 asks the registry for every message', async () => {
    const registry = new SlowRegistry();
    await registry.register('t', entry('n1'), 60_000);
    const cache = new TargetCache(registry, 0, () => 0);
    for (let i = 0; i < 3; i++) await cache.lookup('t');
    expect(registry.lookups).toBe(3);
    expect(cache.hits).toBe(0);
  });

  it("forgets an entry on invalidate: the next lookup is the registry's", async () => {
    const registry = new SlowRegistry();
    await registry.register('t', entry('n1'), 60_000);
    const cache = new TargetCache(registry, 60_000, () => 0);
    await cache.lookup('t');
    await registry.register('t', entry('n2'), 60_000);
    cache.invalidate('t');
    expect((await cache.lookup('t'))?.nodeId).toBe('n2');
  });
});
