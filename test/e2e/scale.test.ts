import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../index.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a fleet spread over load agent processes, against a node of two processes', () => {
  it('holds every device and both ends account for each one', async () => {
    const { report } = await run('hold', {
      devices: 1500,
      connectRate: 1500,
      duration: '3s',
      rate: 150,
      set: {
        'placement.devicesPerProcess': 500,
        'topology.profiles': { default: { processes: 2 } },
        deliveryDeadline: '3s',
      },
      outDir: mkdtempSync(join(tmpdir(), 'pb-scale-')),
    });
    const placement = report.generator.placement!;
    expect(placement.processes).toBe(3);
    expect(placement.devicesByProcess).toEqual([500, 500, 500]);
    expect(new Set(placement.agentPids).size).toBe(3);
    expect(placement.agentPids).not.toContain(process.pid);
    // The agents are real processes, gone once the run is over.
    for (const pid of placement.agentPids) expect(alive(pid)).toBe(false);
    // Shards report as workers of their own; the publisher is the coordinator's thread.
    expect(report.generator.workers.map((w) => w.worker)).toEqual([
      'devices-0',
      'devices-1',
      'devices-2',
      'publisher',
    ]);

    // Accounting from both ends: requested, established, held by the fleet, held by the node.
    expect(report.devices.requested).toBe(1500);
    expect(report.devices.established).toBe(1500);
    expect(report.devices.heldAtEnd).toBe(1500);
    expect(report.devices.heldAtServer).toBe(1500);
    expect(report.latency.connect.count).toBe(1500);
    const node = report.server[0] as {
      connections: number;
      processes?: { perProcess: number[] };
      process?: { rssBytes: number; processes: number };
    };
    // The node's own count is the sum over its two processes, and both took connections.
    expect(node.processes?.perProcess).toHaveLength(2);
    expect(node.processes!.perProcess.reduce((a, b) => a + b, 0)).toBe(1500);
    expect(Math.min(...node.processes!.perProcess)).toBeGreaterThan(300);
    // /proc figures cover the node's primary and its two workers.
    expect(node.process?.processes).toBeGreaterThanOrEqual(3);
    const last = report.timeline.filter((p) => p.phase === 'publishing').at(-1)!;
    expect(last).toMatchObject({ requested: 1500, established: 1500, open: 1500 });
    expect(last.nodes).toEqual({ 'local-1': 1500 });

    // Pushes reach devices held by either of the node's processes, and by any agent.
    expect(report.delivery.accepted).toBeGreaterThan(0);
    expect(report.delivery.lost).toBe(0);
    expect(report.delivery.delivered).toBe(report.delivery.accepted);
    expect(report.gates.find((g) => g.expr === 'connections.heldAtServer >= 100%')?.verdict).toBe(
      'pass',
    );
  });
});
