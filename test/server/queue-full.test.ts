/**
 * A full indirect-push queue refuses new messages with 503 `queue_full`,
 * counted, and says which of a batch it queued before the refusal; it never
 * drops a message it already accepted to make room.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../../server/broker-memory.js';
import { startNode } from '../../server/node.js';
import { MemoryRegistry } from '../../server/registry-memory.js';
import { TEST_API_KEY, TEST_SECRET } from '../helpers/node.js';

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

describe('queue full', () => {
  it('answers 503 queue_full with the ids it queued, counts the refused, and keeps the accepted', async () => {
    const broker = new MemoryBroker({ maxQueueLength: 2 });
    const registry = new MemoryRegistry();
    const { node, address } = await startNode(
      { secret: TEST_SECRET, apiKey: TEST_API_KEY, heartbeatIntervalMs: 60_000 },
      { registry, broker },
    );
    stops.push(async () => {
      await node.stop();
      await broker.close();
      await registry.close();
    });
    const post = (body: unknown) =>
      fetch(`${address.httpUrl}/v1/queue`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const res = await post({
      messages: ['m1', 'm2', 'm3'].map((id) => ({ device: 'offline', id, payload: { id } })),
    });
    expect(res.status).toBe(503);
    const json = (await res.json()) as { error: string; queued: string[]; detail: string };
    expect(json.error).toBe('queue_full');
    expect(json.queued).toHaveLength(2);
    expect(json.detail).toMatch(/maximum of 2 messages/);
    expect(
      node.metrics.get('pushbench_messages_total', { path: 'queue', outcome: 'queue_full' }),
    ).toBe(1);
    expect(node.metrics.get('pushbench_messages_total', { path: 'queue', outcome: 'queued' })).toBe(
      2,
    );
    // The two accepted are still held (waiting or in flight), none dropped for the third.
    expect((await broker.queueDepth()).pending).toBe(2);
    expect((await post({ device: 'offline', id: 'm4', payload: {} })).status).toBe(503);
  });
});
