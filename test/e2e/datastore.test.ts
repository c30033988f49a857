/**
 * The datastore as a fault target: a redis-server pushbench starts and owns
 * (`topology.redis: "managed"`), SIGKILLed by the timeline and started again
 * empty. Nodes must survive it: they answer 503 while Redis is down, keep
 * their devices, and re-register them once it is back, so pushes find them.
 * Needs redis-server (installed when missing); the machine's Redis is not touched.
 */
import { describe, expect, it } from 'vitest';
import { run } from '../../index.js';
import { validateScenario } from '../../scenarios/schema.js';
import { ensureCommand } from '../setup/debian.js';

function scenario(redis: unknown, timeline: unknown[]) {
  return validateScenario(
    { name: 't', topology: { nodes: 2, redis }, devices: { count: 10 }, duration: '5s', timeline },
    { cores: 2 },
  );
}

describe('datastore actions', () => {
  it('are refused without a managed Redis, out of turn, and "kept" without persistence, each by path', () => {
    const down = { at: '1s', action: 'datastore-down' };
    const back = { at: '2s', action: 'datastore-restart' };
    expect(() => scenario('redis://10.0.0.9:6379', [down, back])).toThrow(
      /timeline\[0\]: datastore-down needs topology.redis "managed"/,
    );
    expect(() => scenario('managed', [back])).toThrow(
      /timeline\[0\]: the datastore is not down at that time/,
    );
    expect(() => scenario('managed', [down, { ...back, data: 'kept' }])).toThrow(
      /timeline\[1\]\.data: "kept" needs topology.redis "managed:appendonly"/,
    );
    expect(() => scenario('managed', [down, { ...back, data: 'some' }])).toThrow(
      /timeline\[1\]\.data: must be one of empty, kept, got "some"/,
    );
    expect(() => scenario('redis', [])).toThrow(
      /topology.redis: must be a redis:\/\/ URL, "managed" or "managed:appendonly", got "redis"/,
    );
    const ok = scenario('managed:appendonly', [down, { ...back, data: 'kept' }]);
    expect(ok.topology.managedRedis).toEqual({ appendonly: true });
    expect(ok.timeline.map((t) => t.label)).toEqual(['datastore down', 'datastore restart (kept)']);
  });

  it('datastore-latency: needs a datastore across a link; labels name the node or every node', () => {
    const slow = { at: '1s', action: 'datastore-latency', delay: '50ms' };
    expect(() =>
      validateScenario(
        { name: 't', devices: { count: 10 }, duration: '5s', timeline: [slow] },
        { cores: 2 },
      ),
    ).toThrow(/timeline\[0\]: datastore-latency needs a datastore across a link/);
    const ok = scenario(undefined, [slow, { ...slow, node: 'local-2', jitter: '5ms', for: '1s' }]);
    expect(ok.timeline.map((t) => t.label)).toEqual([
      'datastore latency +50ms every node',
      'datastore latency +50ms local-2',
    ]);
    expect(() => scenario(undefined, [{ ...slow, node: 'local-9' }])).toThrow(
      /timeline\[0\]\.node: no node "local-9"/,
    );
  });

  it('datastore-latency on the hub link: pushes slow by the round trips while it stands, devices untouched', async () => {
    const { report } = await run(
      {
        name: 'datastore-latency',
        topology: { nodes: 2, balancer: 'least-connections' },
        devices: { count: 100, connectRate: 200 },
        traffic: { direct: { rate: 40 } },
        duration: '7s',
        timeline: [
          { at: '2s', action: 'datastore-latency', delay: '200ms', for: '2s', label: 'slow' },
        ],
        // A push's registry lookup crosses the link twice (there and back): +400 ms.
        gates: ['p99(push) >= 400ms', 'p50(push) < 100ms'],
      },
      { write: false, workers: 1 },
    );
    const slow = report.faults.find((f) => f.label === 'slow');
    expect(slow?.fired).toBe(true);
    expect(slow?.tEnd).not.toBeNull();
    expect(slow?.affected).toBe(0);
    expect(report.devices.heldAtEnd).toBe(100);
    expect(report.delivery.lost).toBe(0);
    expect(report.exitCode, JSON.stringify(report.gates)).toBe(0);
  }, 120_000);

  it('Redis SIGKILLed mid-run and started empty: nodes survive, keep their devices, and pushes find them again', async () => {
    await ensureCommand('redis-server', 'redis-server');
    const { report } = await run(
      {
        name: 'datastore-down',
        topology: { nodes: 2, redis: 'managed', balancer: 'least-connections' },
        devices: { count: 100, connectRate: 200 },
        traffic: { direct: { rate: 40 } },
        duration: '9s',
        timeline: [
          { at: '2s', action: 'datastore-down', label: 'down' },
          { at: '4s', action: 'datastore-restart', data: 'empty', label: 'back' },
        ],
      },
      { write: false, workers: 1 },
    );
    const down = report.faults.find((f) => f.label === 'down');
    const back = report.faults.find((f) => f.label === 'back');
    expect(down?.fired && back?.fired).toBe(true);
    expect(back?.tEnd).not.toBeNull();
    // Nothing crashed, no device was dropped.
    expect(report.faults.filter((f) => f.action === 'crash')).toEqual([]);
    expect(report.devices.heldAtEnd).toBe(100);
    expect(report.storm.losses).toBe(0);
    // Refused honestly while Redis was down...
    expect(report.delivery.rejectedByStatus['503'] ?? 0).toBeGreaterThan(0);
    // ...and not lost as "not connected" once it was back empty: the nodes re-registered
    // their devices at once (a heartbeat interval's sweep would have left ~5 s of 404s).
    expect(report.delivery.rejectedByStatus['404'] ?? 0).toBeLessThan(10);
    expect(report.delivery.lost).toBe(0);
    const after = report.timeline.filter((p) => p.t >= 6 && p.phase === 'publishing');
    expect(after.reduce((n, p) => n + (p.received ?? 0), 0)).toBeGreaterThan(50);
  }, 120_000);
});
