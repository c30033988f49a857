/**
 * The built-in chaos scenarios in reduced form (fewer devices, earlier faults,
 * shorter runs), each checked against what its fault should have caused, from
 * the report's timelines, per-fault summaries and the processes' exits.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeHistogram, recordedValues } from '../../core/measure/histogram.js';
import type { Report } from '../../reports/report.js';
import type { RunOptions } from '../../run/run.js';
import { runValid } from '../helpers/valid-run.js';

async function reduced(name: string, options: RunOptions): Promise<Report> {
  const { report } = await runValid(name, {
    workers: 2,
    outDir: mkdtempSync(join(tmpdir(), `pb-${name}-`)),
    ...options,
  });
  return report;
}

function nodeOf(report: Report, id: string) {
  const node = report.topology.nodes.find((n) => n.nodeId === id);
  if (!node) throw new Error(`no node ${id} in the report`);
  return node;
}

/** The balancer's sample closest before `t`. */
function sampleBefore(report: Report, t: number) {
  const before = report.topology.balancer.filter((s) => s.t <= t);
  const last = before.at(-1);
  if (!last) throw new Error(`no balancer sample before ${t}s`);
  return last;
}

describe('built-in chaos scenarios, reduced', () => {
  it('node-kill: the killed node is SIGKILLed and all its devices reconnect to the others', async () => {
    const report = await reduced('node-kill', {
      devices: 800,
      connectRate: 800,
      rate: 200,
      duration: '7s',
      set: { 'timeline[0].at': '2s', 'devices.reconnect': 'full-jitter:200ms:2s' },
    });
    const kill = report.faults.find((f) => f.label === 'kill');
    expect(kill?.fired).toBe(true);
    // `after: "ramp"`: 2 s after publishing began, whenever the ramp resolved.
    const publishing = report.markers.find((m) => m.kind === 'phase' && m.label === 'publishing');
    expect(kill!.t - publishing!.t).toBeGreaterThanOrEqual(1.95);
    expect(kill!.t - publishing!.t).toBeLessThan(2.5);
    expect(nodeOf(report, 'local-2').lives[0]?.exit?.signal).toBe('SIGKILL');
    // Every device the balancer had on local-2 just before the kill was lost and came back.
    const held = sampleBefore(report, kill!.t).backends['local-2']?.connections ?? 0;
    expect(held).toBeGreaterThan(150);
    expect(kill!.affected).toBe(held);
    expect(kill!.notBack).toBe(0);
    expect(kill!.reconnected.p100).not.toBeNull();
    // ... onto the surviving nodes, which end up holding the whole fleet.
    const after = report.timeline.filter((p) => p.t > kill!.t + 1 && p.nodes);
    expect(after.every((p) => p.nodes?.['local-2'] === undefined)).toBe(true);
    const total = (p: (typeof after)[number]) =>
      Object.values(p.nodes ?? {}).reduce((a, b) => a + b, 0);
    expect(Math.max(...after.map(total))).toBe(800);
    expect(report.devices.heldAtServer).toBe(800);
    expect(report.latency.reconnect?.count).toBe(held);
    expect(report.storm.peakAttemptsPerSec).toBeGreaterThanOrEqual(held / 5);
    expect(report.markers.some((m) => m.kind === 'fault' && m.label === 'kill')).toBe(true);
    expect(report.exitCode).toBe(0);
  });

  it('balancer-scale-up: round-robin cascades after a scale-up, least-connections does not', async () => {
    const report = await reduced('balancer-scale-up', {
      devices: 800,
      connectRate: 800,
      rate: 50,
      duration: '26s',
      set: {
        'topology.profiles.small.capacity': 100,
        'timeline[0].at': '2s',
        'timeline[1].at': '2s',
        // Late enough for ten nodes booting at once from TypeScript sources on 2 shared
        // cores: 6 s on a quiet machine here, 14 s seen in a loaded CI run.
        'timeline[2].at': '22s',
        'timeline[2].devices': 800,
        'timeline[2].rate': 800,
      },
    });
    // The new nodes were behind their balancers before the newcomers arrived.
    for (const grow of report.faults.filter((f) => f.action === 'scale-up')) {
      expect(grow.tEnd).not.toBeNull();
      expect(grow.tEnd!).toBeLessThan(22);
    }
    expect(report.regions.rr?.crashed).toBeGreaterThanOrEqual(1);
    expect(report.regions.lc?.crashed).toBe(0);
    const crashes = report.faults.filter((f) => f.action === 'crash');
    expect(crashes.every((c) => c.target.startsWith('rr-'))).toBe(true);
    // A crashed node really exited on its own with the overload exit code.
    const crashed = nodeOf(report, crashes[0]!.target);
    expect(crashed.lives[0]?.exit?.exitCode).toBe(70);
    // Least-connections filled the new nodes: no lc node went past its capacity.
    for (const s of report.topology.balancer) {
      for (const [id, b] of Object.entries(s.backends)) {
        if (id.startsWith('lc-')) expect(b.connections).toBeLessThanOrEqual(100);
      }
    }
    expect(report.gates.every((g) => g.verdict === 'pass')).toBe(true);
  });

  it('regional-latency: +200 ms shows in one region only, and latency routing does not fail over', async () => {
    const report = await reduced('regional-latency', {
      devices: 400,
      rate: 200,
      duration: '7s',
      set: { 'timeline[0].at': '3s' },
    });
    const us = report.latency['push@us'];
    const eu = report.latency['push@eu'];
    expect(us?.p99).toBeGreaterThanOrEqual(200);
    expect(us?.p99).toBeLessThan(400);
    expect(eu?.p99).toBeLessThan(100);
    const routed = report.topology.balancer.at(-1)?.routed;
    expect(routed?.us?.eu ?? 0).toBe(0);
  });

  it('regional-latency with health-checked routing: us devices that reconnect go to eu', async () => {
    const report = await reduced('regional-latency', {
      devices: 400,
      rate: 200,
      duration: '8s',
      set: { 'timeline[0].at': '2s', 'topology.routing.mode': 'health' },
    });
    const last = report.topology.balancer.at(-1);
    expect(last?.regionsHealthy?.us).toBe(false);
    expect(last?.routed?.us?.eu ?? 0).toBeGreaterThan(20);
  });

  it('conntrack-limit: over the table, connects hang until a SYN retry time; without it they do not', async () => {
    const report = await reduced('conntrack-limit', {
      devices: 400,
      connectRate: 200,
      rate: 50,
      duration: '4s',
      set: { 'timeline[0].table': 50, 'timeline[0].for': '3s' },
    });
    const tight = decodeHistogram(report.histograms['connect@tight']!);
    const roomy = report.latency['connect@roomy'];
    expect(report.latency['connect@tight']?.p99).toBeGreaterThanOrEqual(900);
    expect(roomy?.p99).toBeLessThan(500);
    // Every hung connect was let in at one of the kernel's SYN retry offsets.
    const offsets = [1, 2, 3, 4, 5, 7, 11];
    let hung = 0;
    for (const { valueUs, count } of recordedValues(tight)) {
      if (valueUs < 500_000) continue;
      hung += count;
      const s = valueUs / 1e6;
      expect(offsets.some((o) => Math.abs(s - o) < 0.25)).toBe(true);
    }
    expect(hung).toBeGreaterThan(0);
    expect(report.devices.heldAtEnd).toBe(400);
  });
});

describe('built-in chaos scenarios, reduced (continued)', () => {
  it('drain: a graceful drain trickles its reconnects, a kill arrives as a herd', async () => {
    const report = await reduced('drain', {
      devices: 900,
      rate: 100,
      duration: '11s',
      set: {
        'timeline[0].at': '2s',
        'timeline[1].at': '9s',
        'topology.profiles.default.drainWindow': '3s',
      },
    });
    const drain = report.faults.find((f) => f.label === 'drain');
    const kill = report.faults.find((f) => f.label === 'kill');
    expect(drain?.nodes).toHaveLength(1);
    expect(kill?.nodes).toHaveLength(1);
    // The drained node exited by itself after its drain; the other was killed.
    expect(nodeOf(report, drain!.nodes![0]!).lives[0]?.exit?.exitCode).toBe(0);
    expect(nodeOf(report, kill!.nodes![0]!).lives[0]?.exit?.signal).toBe('SIGKILL');
    expect(drain!.affected).toBeGreaterThan(100);
    expect(kill!.affected).toBeGreaterThan(100);
    expect(kill!.peakAttemptsPerSec).toBeGreaterThan(drain!.peakAttemptsPerSec);
    expect(report.storm.notBack).toBe(0);
    // Drained devices left on goaways (1001), not dropped connections.
    expect(
      report.devices.lossesByCause?.goaway ?? report.devices.closesByCode['1001'],
    ).toBeGreaterThan(0);
  });

  it('silent-failure: blackholed sockets stay open until heartbeats notice; writes into them are lost', async () => {
    const report = await reduced('silent-failure', {
      devices: 450,
      rate: 150,
      duration: '9s',
      set: {
        'timeline[0].at': '3s',
        'topology.heartbeatInterval': '1s',
        'topology.heartbeatTimeout': '3s',
        'devices.heartbeatTimeout': '2500ms',
      },
    });
    const hole = report.faults.find((f) => f.label === 'blackhole');
    expect(hole?.affected).toBeGreaterThan(100);
    expect(hole!.notBack).toBe(0);
    // Nobody noticed at once: the first devices back needed the heartbeat timeout to give up.
    expect(hole!.reconnected.p50).toBeGreaterThanOrEqual(2);
    expect(report.devices.lossesByCause?.heartbeat_timeout).toBeGreaterThan(100);
    expect(hole!.lostMessages).toBeGreaterThan(0);
    expect(report.delivery.lost).toBeGreaterThanOrEqual(hole!.lostMessages);
  });

  it('d2d-latency: device-to-device messages are delivered and timed', async () => {
    const report = await reduced('d2d-latency', {
      devices: 202,
      duration: '4s',
      set: { 'traffic.d2d.rate': 200 },
    });
    const d2d = report.deliveryByKind?.d2d;
    expect(d2d?.accepted).toBeGreaterThan(500);
    expect(d2d!.delivered + d2d!.lost).toBe(d2d!.accepted);
    expect(report.latency.d2d?.count).toBeGreaterThanOrEqual(d2d!.delivered);
    expect(report.latency.d2d?.p50).toBeGreaterThan(0);
  });

  it('five-nines: mixed traffic adds up per kind, and a short run is inconclusive, not a pass', async () => {
    const report = await reduced('five-nines', {
      devices: 300,
      duration: '4s',
      set: {
        'traffic.direct.rate': 300,
        'traffic.indirect.rate': 100,
        'traffic.d2d.rate': 50,
        'traffic.rooms.rate': 10,
        deliveryDeadline: '3s',
      },
    });
    const kinds = report.deliveryByKind!;
    for (const kind of ['direct', 'indirect', 'room', 'd2d'] as const) {
      const l = kinds[kind];
      expect(l.accepted, kind).toBeGreaterThan(0);
      expect(l.delivered + l.lost, kind).toBe(l.accepted);
    }
    const sum =
      kinds.direct.accepted + kinds.indirect.accepted + kinds.room.accepted + kinds.d2d.accepted;
    expect(report.delivery.accepted).toBe(sum);
    expect(report.gates.find((g) => g.metric === 'delivery')?.verdict).toBe('inconclusive');
    expect(report.exitCode).toBe(4);
  });
});
