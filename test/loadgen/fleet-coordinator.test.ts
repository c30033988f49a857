/**
 * The coordinator with real worker threads against an in-process node:
 * routes by region, the reserve opened by `connectMore`, markers, and the
 * merged result (dynamic series, drops, requested counts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TimelinePoint } from '../../core/result.js';
import { Coordinator } from '../../loadgen/coordinator.js';
import type { DeviceRoute } from '../../loadgen/messages.js';
import type { Scenario } from '../../scenarios/schema.js';
import type { NodeAddress, NodeBackends, NodeOptions, PushNode } from '../../server/node.js';
import { startTestNode, TEST_API_KEY, TEST_SECRET } from '../helpers/node.js';

const SECRET = TEST_SECRET;
const KEY = TEST_API_KEY;

let node: PushNode | undefined;
let addr: NodeAddress;
let backends: NodeBackends;

async function boot(options: Partial<NodeOptions> = {}): Promise<void> {
  const started = await startTestNode(options);
  node = started.node;
  addr = started.address;
  backends = started.backends;
}

afterEach(async () => {
  await node?.stop();
  node = undefined;
  await backends.registry.close();
  await backends.broker.close();
});

function routesOf(s: Scenario): DeviceRoute[] {
  return s.devices.regions.map((r) => ({
    ...r,
    host: addr.host,
    port: addr.port,
    path: '/ws',
    localAddresses: [],
  }));
}

const health = { intervalMs: 1000, timeoutMs: 500, fall: 2, rise: 2 };

function scenario(devices: number, reserve: number): Scenario {
  const profile = {
    name: 'test',
    capacity: null,
    capacityPercent: null,
    overload: 'refuse' as const,
    heartbeatIntervalMs: 60_000,
    heartbeatTimeoutMs: 120_000,
    drainWindowMs: 1000,
    maxLifetimeMs: null,
    admissionRateHz: null,
    d2dCacheTtlMs: null,
    cpu: null,
    memoryBytes: null,
    conntrack: null,
    openFiles: null,
    processes: null,
    price: null,
  };
  const half = devices / 2;
  return {
    name: 'coordinator-test',
    description: '',
    topology: {
      regions: ['eu', 'us'].map((name) => ({
        name,
        nodes: 1,
        profile,
        balancer: {
          algorithm: 'round-robin' as const,
          engine: 'builtin' as const,
          slowStartMs: 0,
          failOpen: false,
          redispatch: false,
          maxConnecting: null,
          queueTimeoutMs: null,
          health,
        },
      })),
      routing: { mode: 'latency', health },
      redisUrl: null,
      managedRedis: null,
      balanced: false,
      nodeNice: 10,
      peerLinks: true,
      datastoreRegion: 'eu',
      network: 'userland',
      tls: null,
    },
    devices: {
      count: devices,
      connectRateHz: 400,
      connectTimeoutMs: 5000,
      accounts: 5,
      regions: [
        { region: 'eu', first: 0, count: half },
        { region: 'us', first: half, count: half + reserve },
      ],
      reconnect: { policy: 'full-jitter', baseMs: 50, capMs: 500, maxAttempts: 0 },
      periodicReconnect: null,
      heartbeatTimeoutMs: null,
      registration: false,
      tlsResume: true,
      reserve,
    },
    traffic: {
      direct: { rateHz: 100, payloadBytes: 16 },
      indirect: { rateHz: 0, payloadBytes: 0 },
      d2d: { rateHz: 0, payloadBytes: 0 },
      rooms: { count: 0, perDevice: 0, rateHz: 0, payloadBytes: 0 },
    },
    timeline: [],
    durationMs: 1500,
    deliveryDeadlineMs: 2000,
    workers: 2,
    placement: { devicesPerProcess: null, sourceAddresses: null },
    gates: [],
    seed: 3,
  };
}

describe('coordinator', () => {
  it('routes devices by region, opens the reserve on connectMore and merges every series', async () => {
    await boot();
    const s = scenario(20, 10);
    const coordinator = new Coordinator({
      scenario: s,
      routes: routesOf(s),
      httpUrls: [addr.httpUrl],
      secret: SECRET,
      apiKey: KEY,
      reportIntervalMs: 250,
    });
    let startUs = 0;
    const points: TimelinePoint[] = [];
    coordinator.on('started', (us) => {
      startUs = us;
      // Asked for more than the reserve holds: only the reserve opens.
      coordinator.connectMore(15, 200);
    });
    coordinator.on('interval', (p) => points.push(p));
    coordinator.on('phase', (phase) => {
      if (phase !== 'publishing') return;
      coordinator.setApiTargets([addr.httpUrl]);
      const t = coordinator.elapsedS();
      coordinator.mark({
        t,
        kind: 'fault',
        label: 'nothing really',
        action: 'latency',
        target: 'eu',
      });
    });

    const result = await coordinator.run();

    expect(startUs).toBeGreaterThan(0);
    expect(result.marks.startUs).toBe(startUs);
    expect(result.connections.requested).toBe(30);
    expect(result.connections.established).toBe(30);
    expect(result.connections.heldAtEnd).toBe(30);
    expect(result.connections.failed).toBe(0);
    expect(result.histograms.connect?.totalCount).toBe(30);
    // Per-region push series sum to the whole.
    const eu = result.histograms['push@eu']?.totalCount ?? 0;
    const us = result.histograms['push@us']?.totalCount ?? 0;
    expect(eu).toBeGreaterThan(0);
    expect(us).toBeGreaterThan(0);
    expect(eu + us).toBe(result.histograms.push?.totalCount);
    expect(result.drops).toHaveLength(0);
    expect(result.gaveUp).toBe(0);
    expect(result.traffic.direct.accepted).toBe(result.ledger.accepted);
    expect(result.markers.some((m) => m.kind === 'fault' && m.target === 'eu')).toBe(true);
    expect(points.length).toBeGreaterThan(2);
    expect(points.every((p) => p.losses === 0 && p.reconnectAttempts === 0)).toBe(true);
    expect(points.reduce((n, p) => n + p.connectAttempts, 0)).toBe(30);
  });

  it('follows the node goaways under server-hint and puts each loss on the run time axis', async () => {
    // Every connection lives ~0.3-0.6 s, then gets a goaway (reconnectAfterMs 0..200) and a 4002 close.
    await boot({
      heartbeatIntervalMs: 300,
      heartbeatTimeoutMs: 5000,
      maxLifetimeMs: 300,
      lifetimeJitterMs: 0,
      goawayGraceMs: 200,
    });
    const s = scenario(10, 0);
    s.devices.reconnect = { policy: 'server-hint', baseMs: 2000, capMs: 5000, maxAttempts: 0 };
    const coordinator = new Coordinator({
      scenario: s,
      routes: routesOf(s),
      httpUrls: [addr.httpUrl],
      secret: SECRET,
      apiKey: KEY,
      reportIntervalMs: 250,
    });
    const points: TimelinePoint[] = [];
    coordinator.on('interval', (p) => points.push(p));
    const result = await coordinator.run();

    const losses = result.drops.length / 3;
    expect(losses).toBeGreaterThanOrEqual(10);
    expect(result.connections.lossesByCause).toEqual({ goaway: losses });
    const endS = (result.marks.endUs - result.marks.startUs) / 1e6;
    let back = 0;
    for (let i = 0; i < result.drops.length; i += 3) {
      const [lostAt, backAt, attempts] = [
        result.drops[i]!,
        result.drops[i + 1]!,
        result.drops[i + 2]!,
      ];
      expect(lostAt).toBeGreaterThan(0);
      expect(lostAt).toBeLessThan(endS);
      if (backAt === -1) continue;
      back++;
      expect(backAt).toBeGreaterThanOrEqual(lostAt);
      // The hint (at most 200 ms), not the policy's 2 s fallback, set the wait.
      expect(backAt - lostAt).toBeLessThan(1.5);
      expect(attempts).toBe(1);
    }
    expect(result.histograms.reconnect?.totalCount).toBe(back);
    expect(points.reduce((n, p) => n + p.losses, 0)).toBe(losses);
    expect(result.connections.established).toBe(10);
  });
});
