import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// Installs the gate parser that scenario validation lists bad gates with.
import '../../reports/gates.js';
import { describe, expect, it } from 'vitest';
import { PushbenchError } from '../../core/errors.js';
import { loadScenario } from '../../scenarios/load.js';
import { validateScenario } from '../../scenarios/schema.js';
import { homeByRegion, interleaveByShare } from '../../scenarios/sections/devices.js';

const ctx = { cores: 2 };

function problemsOf(input: unknown): readonly string[] {
  try {
    validateScenario(input, ctx);
  } catch (err) {
    expect(err).toBeInstanceOf(PushbenchError);
    return (err as PushbenchError).problems;
  }
  throw new Error('expected validation to fail');
}

describe('scenario validation', () => {
  it('fills defaults and converts durations to milliseconds', () => {
    const s = validateScenario({ name: 'x', devices: { count: 10 }, duration: '1.5m' }, ctx);
    expect(s.durationMs).toBe(90_000);
    // Half of ctx's 2 cores: the run's nodes take the other half.
    expect(s.workers).toBe(1);
    // Over TLS, one per core: the handshakes are the fleet's own work.
    const tls = { name: 'x', devices: { count: 10 }, duration: '1s', topology: { tls: 'node' } };
    expect(validateScenario(tls, ctx).workers).toBe(2);
    expect(validateScenario(tls, { cores: 1 }).workers).toBe(1);
    expect(validateScenario({ ...tls, topology: {} }, { cores: 8 }).workers).toBe(4);
    expect(validateScenario({ ...tls, workers: 3 }, ctx).workers).toBe(3);
    expect(s.devices.connectRateHz).toBe(1000);
    expect(s.traffic.direct.rateHz).toBe(100);
    expect(s.deliveryDeadlineMs).toBe(5000);
  });

  it('lists every problem with its path before anything runs', () => {
    const problems = problemsOf({
      name: 'bad name!',
      devices: { count: 0, connectRate: 'fast' },
      traffic: { direct: { rate: -1 } },
      duration: 'later',
      surprise: true,
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^surprise: unknown field/),
        expect.stringMatching(/^name: /),
        'devices.count: must be >= 1, got 0',
        'devices.connectRate: must be a number, got "fast"',
        'traffic.direct.rate: must be >= 0, got -1',
        expect.stringMatching(/^duration: must be a duration/),
      ]),
    );
    expect(problems).toHaveLength(6);
  });

  it('lists bad timeline entries and bad gates together, one line per bad gate', () => {
    const problems = problemsOf({
      name: 'both',
      devices: { count: 10 },
      duration: '5s',
      timeline: [{ at: '1s', action: 'kill-node', node: 'local-9' }],
      gates: ['p99(push) < 50ms', 'p99(push) == 1s', 'colour(push) < 1'],
    });
    expect(problems).toEqual([
      expect.stringMatching(/^timeline\[0\]\.node: no node "local-9"/),
      expect.stringMatching(/^gates: gate "p99\(push\) == 1s": bad operator "=="/),
      expect.stringMatching(
        /^gates: gate "colour\(push\) < 1": unknown latency statistic "colour"/,
      ),
    ]);
  });

  it('reads topology.tls, and refuses TLS at a balancer that is not HAProxy in one line', () => {
    const base = { name: 't', devices: { count: 10 }, duration: '5s' };
    expect(validateScenario(base, ctx).topology.tls).toBeNull();
    expect(
      validateScenario({ ...base, topology: { nodes: 2, tls: 'node' } }, ctx).topology.tls,
    ).toEqual({ at: 'node', tickets: 'shared', key: 'ec-p256' });
    expect(
      validateScenario(
        {
          ...base,
          topology: {
            nodes: 2,
            tls: 'balancer',
            tlsTickets: 'per-node',
            tlsKey: 'rsa-2048',
            balancer: { engine: 'haproxy' },
          },
        },
        ctx,
      ).topology.tls,
    ).toEqual({ at: 'balancer', tickets: 'per-node', key: 'rsa-2048' });
    // One node behind its region's own HAProxy: still balanced, so the HAProxy runs.
    const single = validateScenario(
      {
        ...base,
        topology: {
          regions: [{ name: 'eu', nodes: 1, balancer: { engine: 'haproxy' } }],
          tls: 'balancer',
        },
      },
      ctx,
    ).topology;
    expect(single.balanced).toBe(true);
    expect(problemsOf({ ...base, topology: { nodes: 2, tls: 'balancer' } })).toEqual([
      expect.stringMatching(
        /^topology\.tls: "balancer" is TLS ended by HAProxy: region local has balancer\.engine "builtin"/,
      ),
    ]);
    expect(
      problemsOf({
        ...base,
        topology: {
          tls: 'node',
          tlsCertificate: { cert: 'c.pem', servername: '10.0.0.1', extra: 1 },
        },
      }),
    ).toEqual([
      expect.stringMatching(/^topology\.tlsCertificate\.extra: unknown field/),
      'topology.tlsCertificate.key: is required',
      'topology.tlsCertificate.servername: must be a DNS name, got "10.0.0.1"',
    ]);
    expect(problemsOf({ ...base, topology: { tls: 'yes', tlsTickets: 'global' } })).toEqual([
      'topology.tls: must be one of off, node, balancer, got "yes"',
      'topology.tlsTickets: must be one of shared, per-node, got "global"',
    ]);
  });

  // Boolean balancer flags: default false, read for the engines that have them, refused in one
  // line for the one that does not, and a value that is not a boolean named by path.
  for (const { flag, engines, refused, why, bad } of [
    {
      flag: 'failOpen',
      engines: ['kernel', 'builtin'],
      refused: 'haproxy',
      why: 'HAProxy does not fail open (with no server up it answers 503): use engine "builtin" or "kernel"',
      bad: 1,
    },
    {
      flag: 'redispatch',
      engines: ['haproxy', 'builtin'],
      refused: 'kernel',
      why: 'needs engine "haproxy" or "builtin": the kernel balancer (nft DNAT) forwards the SYN and cannot retry it, so a device whose node refuses is reset and reconnects',
      bad: 'yes',
    },
  ] as const) {
    it(`reads balancer.${flag} (default false) for ${engines.join(' and ')}, and refuses it for ${refused} in one line`, () => {
      const base = { name: 'x', devices: { count: 1 }, duration: 1 };
      expect(validateScenario(base, ctx).topology.regions[0]!.balancer[flag]).toBe(false);
      for (const engine of engines) {
        const on = validateScenario(
          { ...base, topology: { nodes: 2, balancer: { engine, [flag]: true } } },
          ctx,
        );
        expect(on.topology.regions[0]!.balancer[flag]).toBe(true);
      }
      expect(
        problemsOf({
          ...base,
          topology: { nodes: 2, balancer: { engine: refused, [flag]: true } },
        }),
      ).toEqual([`topology.balancer.${flag}: ${why}`]);
      expect(problemsOf({ ...base, topology: { balancer: { [flag]: bad } } })).toEqual([
        `topology.balancer.${flag}: must be true or false, got ${JSON.stringify(bad)}`,
      ]);
    });
  }

  it('reads balancer.maxConnecting (default null: no cap) for the builtin engine, a region overriding the topology, and refuses it for haproxy and kernel and bad values in one line each', () => {
    const base = { name: 'x', devices: { count: 1 }, duration: 1 };
    expect(validateScenario(base, ctx).topology.regions[0]!.balancer.maxConnecting).toBeNull();
    const on = validateScenario(
      {
        ...base,
        topology: {
          balancer: { maxConnecting: 64 },
          regions: [
            { name: 'eu', nodes: 2 },
            { name: 'us', nodes: 2, balancer: { maxConnecting: null } },
          ],
        },
      },
      ctx,
    );
    expect(on.topology.regions.map((r) => r.balancer.maxConnecting)).toEqual([64, null]);
    // Its queue timeout: none unless given (a device waits until it gives up).
    expect(on.topology.regions[0]!.balancer.queueTimeoutMs).toBeNull();
    const timeouts = (queueTimeout: unknown) =>
      validateScenario({ ...base, topology: { balancer: { maxConnecting: 8, queueTimeout } } }, ctx)
        .topology.regions[0]!.balancer.queueTimeoutMs;
    expect(timeouts('750ms')).toBe(750);
    expect(timeouts(null)).toBeNull();
    expect(problemsOf({ ...base, topology: { balancer: { queueTimeout: 'soon' } } })).toHaveLength(
      1,
    );
    expect(
      problemsOf({
        ...base,
        topology: { nodes: 2, balancer: { engine: 'haproxy', maxConnecting: 8 } },
      }),
    ).toEqual([
      `topology.balancer.maxConnecting: needs engine "builtin": HAProxy caps a server's sessions (maxconn), which WebSockets hold for hours, not its connects in progress`,
    ]);
    expect(
      problemsOf({
        ...base,
        topology: { nodes: 2, balancer: { engine: 'kernel', maxConnecting: 8 } },
      }),
    ).toEqual([
      'topology.balancer.maxConnecting: needs engine "builtin": the kernel balancer (nft DNAT) forwards each SYN as it comes and cannot queue it',
    ]);
    for (const [bad, why] of [
      [0, 'must be >= 1, got 0'],
      [2.5, 'must be a whole number, got 2.5'],
      ['many', 'must be a number, got "many"'],
    ] as const) {
      expect(problemsOf({ ...base, topology: { balancer: { maxConnecting: bad } } })).toEqual([
        `topology.balancer.maxConnecting: ${why}`,
      ]);
    }
  });

  it('reads topology.peerLinks (default true; --set gives strings) and refuses anything else in one line', () => {
    const base = { name: 'x', devices: { count: 1 }, duration: 1 };
    expect(validateScenario(base, ctx).topology.peerLinks).toBe(true);
    expect(
      validateScenario({ ...base, topology: { peerLinks: false } }, ctx).topology.peerLinks,
    ).toBe(false);
    expect(
      validateScenario({ ...base, topology: { peerLinks: 'false' } }, ctx).topology.peerLinks,
    ).toBe(false);
    expect(problemsOf({ ...base, topology: { peerLinks: 'no' } })).toEqual([
      'topology.peerLinks: must be true or false, got "no"',
    ]);
  });

  it('reads topology.datastoreRegion (default the first region) and refuses one that is not a region', () => {
    const base = {
      name: 'x',
      devices: { count: 1 },
      duration: 1,
      topology: {
        regions: [
          { name: 'eu', nodes: 1 },
          { name: 'us', nodes: 1 },
        ],
      },
    };
    expect(validateScenario(base, ctx).topology.datastoreRegion).toBe('eu');
    expect(
      validateScenario({ name: 'x', devices: { count: 1 }, duration: 1 }, ctx).topology
        .datastoreRegion,
    ).toBe('local');
    const us = { ...base, topology: { ...base.topology, datastoreRegion: 'us' } };
    expect(validateScenario(us, ctx).topology.datastoreRegion).toBe('us');
    expect(problemsOf({ ...base, topology: { ...base.topology, datastoreRegion: 'ap' } })).toEqual([
      'topology.datastoreRegion: must name a region ("eu", "us"), got "ap"',
    ]);
  });

  it('reads topology.nodeNice (default 10) and refuses one outside 0-19 in one line', () => {
    const base = { name: 'x', devices: { count: 1 }, duration: 1 };
    expect(validateScenario(base, ctx).topology.nodeNice).toBe(10);
    expect(validateScenario({ ...base, topology: { nodeNice: 0 } }, ctx).topology.nodeNice).toBe(0);
    expect(problemsOf({ ...base, topology: { nodeNice: 20 } })).toEqual([
      'topology.nodeNice: must be <= 19, got 20',
    ]);
    expect(problemsOf({ ...base, topology: { nodeNice: 2.5 } })).toEqual([
      'topology.nodeNice: must be a whole number, got 2.5',
    ]);
  });

  it('requires devices and duration', () => {
    expect(problemsOf({ name: 'x' })).toEqual(['devices: is required', 'duration: is required']);
  });

  it('expands topology.nodes to one region of nodes behind a balancer', () => {
    const s = validateScenario(
      { name: 'x', devices: { count: 1 }, duration: 1, topology: { nodes: 3 } },
      ctx,
    );
    expect(s.topology.regions).toHaveLength(1);
    expect(s.topology.regions[0]).toMatchObject({ name: 'local', nodes: 3 });
    expect(s.topology.balanced).toBe(true);
    const single = validateScenario({ name: 'x', devices: { count: 1 }, duration: 1 }, ctx);
    expect(single.topology.balanced).toBe(false);
  });

  it('validates regions, profiles, balancers, reconnect policies and the timeline with paths', () => {
    const problems = problemsOf({
      name: 'x',
      devices: { count: 10, reconnect: 'sometimes:1s', regions: { mars: 1 } },
      duration: 1,
      topology: {
        regions: [
          { name: 'eu', nodes: 2, balancer: 'fastest' },
          { name: 'us', nodes: 0, profile: 'huge' },
        ],
        profiles: { small: { capacity: -1, overload: 'explode' } },
      },
      timeline: [
        { at: '5s', action: 'kill-node', node: 'eu-3' },
        { at: '1s', action: 'scale-up', region: 'eu', nodes: 1 },
        { at: '6s', action: 'kill-node', node: 'eu-3' },
        { at: 'soon', action: 'latency', region: 'eu' },
        { at: '2s', action: 'teleport' },
        { at: '2s', action: 'blackhole', region: 'eu', node: 'eu-1' },
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'topology.regions[1].nodes: must be >= 1, got 0',
        expect.stringMatching(/^topology\.regions\[0\]\.balancer: must be one of round-robin/),
        expect.stringMatching(/^topology\.regions\[1\]\.profile: unknown profile "huge"/),
        'topology.profiles.small.capacity: must be >= 1, got -1',
        expect.stringMatching(/^topology\.profiles\.small\.overload: must be refuse/),
        expect.stringMatching(/^devices\.reconnect: must be one of immediate/),
        expect.stringMatching(/^devices\.regions\.mars: no such region/),
        expect.stringMatching(/^timeline\[4\]\.action: must be one of/),
        expect.stringMatching(/^timeline\[3\]\.at: must be a duration/),
        expect.stringMatching(/^timeline\[3\]\.delay: is required/),
        'timeline[5]: needs exactly one of node or region',
      ]),
    );
    // eu-3 exists from the scale-up at 1s on; sorted by time, the kill at 5s is valid
    // and the second kill at 6s is not.
    expect(problems.filter((x) => x.includes('eu-3'))).toEqual([
      'timeline[2].node: eu-3 is not running at 6000ms (it went down at 5000ms)',
    ]);
  });

  it('follows which nodes are running along the timeline', () => {
    const problems = problemsOf({
      name: 'x',
      devices: { count: 1 },
      duration: 1,
      topology: { nodes: 3 },
      timeline: [
        { at: '1s', action: 'kill-node', node: 'local-1' },
        { at: '2s', action: 'stop-node', node: 'local-1' },
        { at: '3s', action: 'restart-node', node: 'local-2' },
        { at: '4s', action: 'restart-node', node: 'local-1' },
        { at: '5s', action: 'scale-down', region: 'local', nodes: 1 },
        { at: '6s', action: 'kill-node', node: 'local-3' },
        { at: '7s', action: 'scale-down', region: 'local', nodes: 3 },
      ],
    });
    expect(problems).toEqual([
      'timeline[1].node: local-1 is not running at 2000ms (it went down at 1000ms)',
      'timeline[2].node: local-2 is still running at 3000ms',
      'timeline[5].node: local-3 is not running at 6000ms (it went down at 5000ms)',
      'timeline[6].nodes: only 2 nodes of local are running at 7000ms, got 3',
    ]);
  });

  it("a capacity and a connect action's devices and rate given as percentages scale with the fleet", () => {
    const at = (count: number) =>
      validateScenario(
        {
          name: 'x',
          devices: { count, connectRate: 100, regions: { eu: 2, us: 1 } },
          duration: '10s',
          topology: {
            regions: [
              { name: 'eu', nodes: 4, profile: 'small' },
              { name: 'us', nodes: 2, profile: 'small' },
            ],
            profiles: { small: { capacity: '125%', overload: 'crash' } },
          },
          timeline: [{ at: '1s', action: 'connect', devices: '50%', rate: '250%' }],
        },
        ctx,
      );
    // 2,400: eu 1,600 over 4 nodes (400 each), us 800 over 2 (400): 125 % is 500 in both.
    const small = at(2400);
    expect(small.topology.regions.map((r) => r.profile.capacity)).toEqual([500, 500]);
    expect(small.topology.regions[0]?.profile.capacityPercent).toBe(125);
    expect(small.devices.reserve).toBe(1200);
    const big = at(24_000);
    expect(big.topology.regions.map((r) => r.profile.capacity)).toEqual([5000, 5000]);
    expect(big.devices.reserve).toBe(12_000);
    expect(big.timeline[0]).toMatchObject({ action: 'connect', devices: 12_000, rateHz: 250 });
    // A region that starts with no devices has no share to take a percentage of.
    expect(
      problemsOf({
        name: 'x',
        devices: { count: 10, regions: { eu: 1, us: 0 } },
        duration: '10s',
        topology: {
          regions: [
            { name: 'eu', nodes: 1 },
            { name: 'us', nodes: 1, profile: 'small' },
          ],
          profiles: { small: { capacity: '150%' } },
        },
      }),
    ).toEqual([
      'topology.profiles.small.capacity: "150%" is of a node\'s share of its region\'s initial devices, and region us starts with none: give a count',
    ]);
    expect(
      problemsOf({
        name: 'x',
        devices: { count: 10 },
        duration: '10s',
        topology: { profiles: { default: { capacity: 'lots' } } },
        timeline: [{ at: '1s', action: 'connect', devices: '-5%' }],
      }),
    ).toEqual([
      'topology.profiles.default.capacity: must be a whole number or a percentage like "100%", got "lots"',
      'timeline[0].devices: must be a whole number or a percentage like "100%", got "-5%"',
    ]);
  });

  it('parses a full chaos scenario', () => {
    const s = validateScenario(
      {
        name: 'x',
        devices: { count: 9, reconnect: 'decorrelated-jitter:200ms:5s', regions: { eu: 2, us: 1 } },
        duration: '10s',
        topology: {
          regions: [
            { name: 'eu', nodes: 2, profile: 'small' },
            { name: 'us', nodes: 1, balancer: { algorithm: 'least-connections', slowStart: '5s' } },
          ],
          profiles: { small: { capacity: 100, overload: 'crash' } },
          routing: 'health',
        },
        timeline: [
          { at: '3s', action: 'latency', region: 'us', delay: '200ms', jitter: '20ms', for: '2s' },
          { at: '1s', action: 'connect', devices: 5, rate: 50 },
        ],
      },
      ctx,
    );
    expect(s.devices.reconnect).toEqual({
      policy: 'decorrelated-jitter',
      baseMs: 200,
      capMs: 5000,
      maxAttempts: 0,
    });
    // 9 devices 2:1 (6 eu, 3 us), then the connect action's 5 (3 eu, 2 us), each set with the
    // regions taking turns, so any stretch of indices holds both.
    const homed = (from: number, to: number, region: string) =>
      s.devices.regions
        .filter((b) => b.region === region && b.first >= from && b.first < to)
        .reduce((n, b) => n + b.count, 0);
    expect([homed(0, 9, 'eu'), homed(0, 9, 'us'), homed(9, 14, 'eu'), homed(9, 14, 'us')]).toEqual([
      6, 3, 3, 2,
    ]);
    expect(s.devices.regions.slice(0, 2).map((b) => b.region)).toEqual(['eu', 'us']);
    // Blocks tile 0..14 in order.
    let next = 0;
    for (const b of s.devices.regions) {
      expect(b.first).toBe(next);
      next += b.count;
    }
    expect(next).toBe(14);
    expect(s.devices.reserve).toBe(5);
    expect(s.topology.regions[0]?.profile).toMatchObject({ capacity: 100, overload: 'crash' });
    expect(s.topology.regions[1]?.balancer).toMatchObject({
      algorithm: 'least-connections',
      slowStartMs: 5000,
    });
    expect(s.topology.routing.mode).toBe('health');
    expect(s.timeline.map((t) => t.action)).toEqual(['connect', 'latency']);
    expect(s.timeline[1]).toMatchObject({
      scope: { region: 'us' },
      delayMs: 200,
      jitterMs: 20,
      forMs: 2000,
    });
  });

  it('counts an action from the ramp with after: "ramp", orders it by the ramp estimate, refuses another anchor', () => {
    const base = {
      name: 'x',
      duration: '10s',
      topology: { nodes: 4 },
      devices: { count: 4000, connectRate: 1000 },
    };
    const s = validateScenario(
      {
        ...base,
        timeline: [
          // About 5 s on the run's clock (the ramp takes ~4 s): after the kill at 3 s.
          { at: '1s', after: 'ramp', action: 'restart-node', node: 'local-2' },
          { at: '3s', action: 'kill-node', node: 'local-2' },
        ],
      },
      ctx,
    );
    expect(s.timeline.map((t) => [t.action, t.atMs, t.after])).toEqual([
      ['kill-node', 3000, undefined],
      ['restart-node', 1000, 'ramp'],
    ]);
    // From the start, the restart would come first, while local-2 still runs.
    expect(
      problemsOf({
        ...base,
        timeline: [
          { at: '1s', after: 'start', action: 'restart-node', node: 'local-2' },
          { at: '3s', action: 'kill-node', node: 'local-2' },
        ],
      }),
    ).toEqual([expect.stringMatching(/^timeline\[0\]\.node: local-2 is still running/)]);
    expect(
      problemsOf({
        ...base,
        timeline: [{ at: '1s', after: 'publishing', action: 'kill-node', node: 'local-2' }],
      }),
    ).toEqual(['timeline[0].after: must be one of start, ramp, got "publishing"']);
    // Past the end of publishing after the ramp, it could never fire.
    expect(
      problemsOf({
        ...base,
        timeline: [{ at: '10s', after: 'ramp', action: 'kill-node', node: 'local-2' }],
      }),
    ).toEqual([
      'timeline[0].at: 10000ms after the ramp is not before the end of publishing (duration 10000ms): it would never fire',
    ]);
  });
  it('times heartbeats out only after a whole interval: a longer default, a shorter timeout refused', () => {
    const base = { name: 'x', duration: '1s', devices: { count: 10 } };
    const slow = {
      regions: [{ name: 'a', nodes: 1, profile: 'slow' }],
      profiles: { slow: { heartbeatInterval: '60s' } },
    };
    const timeoutOf = (topology: object) =>
      validateScenario({ ...base, topology }, ctx).topology.regions[0]?.profile.heartbeatTimeoutMs;
    // Unset: 3 intervals, at least 30 s; given: as given.
    expect(timeoutOf({ heartbeatInterval: '30s' })).toBe(90_000);
    expect(timeoutOf({ heartbeatInterval: '2s' })).toBe(30_000);
    expect(timeoutOf({ heartbeatInterval: '30s', heartbeatTimeout: '45s' })).toBe(45_000);
    // A profile with its own interval gets its own default unless the topology names one.
    expect(timeoutOf(slow)).toBe(180_000);
    // No longer than the interval: one line each, naming the field.
    expect(
      problemsOf({ ...base, topology: { heartbeatInterval: '30s', heartbeatTimeout: '30s' } }),
    ).toEqual([
      expect.stringMatching(
        /^topology\.heartbeatTimeout: must be longer than the heartbeat interval \(30\.0s\), got 30\.0s: /,
      ),
    ]);
    expect(problemsOf({ ...base, topology: { ...slow, heartbeatTimeout: '30s' } })).toEqual([
      expect.stringMatching(/^topology\.profiles\.slow\.heartbeatTimeout: must be longer/),
    ]);
    expect(problemsOf({ ...base, devices: { count: 10, heartbeatTimeout: '10s' } })).toEqual([
      expect.stringMatching(
        /^devices\.heartbeatTimeout: must be longer than the heartbeat interval \(10\.0s\), got 10\.0s/,
      ),
    ]);
  });
});

describe('loading scenarios', () => {
  it('applies command-line overrides without changing the built-in', async () => {
    const s = await loadScenario('smoke', {
      devices: 5,
      rate: 7,
      duration: '2s',
      gates: ['p99(push) < 1s'],
    });
    expect(s.devices.count).toBe(5);
    expect(s.traffic.direct.rateHz).toBe(7);
    expect(s.durationMs).toBe(2000);
    expect(s.gates).toContain('p99(push) < 1s');
    const again = await loadScenario('smoke');
    expect(again.devices.count).toBe(2000);
    expect(again.gates).not.toContain('p99(push) < 1s');
  });

  it('refuses an unknown name with PB_UNKNOWN_SCENARIO', async () => {
    await expect(loadScenario('nope')).rejects.toMatchObject({ code: 'PB_UNKNOWN_SCENARIO' });
    await expect(loadScenario('./missing.json')).rejects.toMatchObject({
      code: 'PB_UNKNOWN_SCENARIO',
    });
  });
});

describe('--set and --matrix', () => {
  it('sets any field by path and parses values as JSON when they parse', async () => {
    const { parseAssignment } = await import('../../scenarios/load.js');
    const set = Object.fromEntries(
      [
        'devices.connectTimeout=5s',
        'devices.count=12',
        'topology.heartbeatInterval="2s"',
        'rate=3',
      ].map(parseAssignment),
    );
    const s = await loadScenario('smoke', { set });
    expect(s.devices.connectTimeoutMs).toBe(5000);
    expect(s.devices.count).toBe(12);
    expect(s.topology.regions[0]?.profile.heartbeatIntervalMs).toBe(2000);
    expect(s.traffic.direct.rateHz).toBe(3);
  });

  it('reports a --set on an unknown field as a scenario problem with its path', async () => {
    await expect(loadScenario('smoke', { set: { 'devices.colour': 'red' } })).rejects.toMatchObject(
      {
        code: 'PB_BAD_SCENARIO',
        problems: [expect.stringMatching(/^devices\.colour: unknown field/)],
      },
    );
  });

  it('expands matrix axes into every combination, first axis slowest', async () => {
    const { matrixVariants } = await import('../../run/matrix.js');
    const { parseMatrixAxis } = await import('../../scenarios/load.js');
    const axes = [
      parseMatrixAxis('devices=10,20'),
      parseMatrixAxis('topology.heartbeatInterval=1s,2s'),
    ];
    expect(matrixVariants(axes)).toEqual([
      { devices: 10, 'topology.heartbeatInterval': '1s' },
      { devices: 10, 'topology.heartbeatInterval': '2s' },
      { devices: 20, 'topology.heartbeatInterval': '1s' },
      { devices: 20, 'topology.heartbeatInterval': '2s' },
    ]);
    expect(() => parseMatrixAxis('devices=10')).toThrow(/at least two values/);
    expect(() => parseMatrixAxis('=1,2')).toThrow(/field=value1,value2/);
    expect(() => parseMatrixAxis('a..b=1,2')).toThrow(/bad field path/);
  });
});

describe('scenario files written outside the project', () => {
  const body = `import { defineScenario } from 'pushbench';
export default defineScenario({
  name: 'outside',
  topology: { regions: [{ name: 'eu', nodes: 2 }] },
  devices: { count: 10 },
  timeline: [{ at: '1s', action: 'kill-node', node: 'eu-1' }],
  duration: '2s',
});
`;
  for (const type of ['commonjs', 'module']) {
    it(`load a .ts file importing 'pushbench' where it is not installed (${type} package)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'pb-outside-'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type }));
      writeFileSync(join(dir, 'kill.ts'), body);
      const s = await loadScenario(join(dir, 'kill.ts'));
      expect(s.name).toBe('outside');
      expect(s.timeline[0]).toMatchObject({ action: 'kill-node', node: 'eu-1' });
    });
  }

  it('says which file is missing, and which import failed, apart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-outside-'));
    await expect(loadScenario(join(dir, 'nope.ts'))).rejects.toMatchObject({
      code: 'PB_UNKNOWN_SCENARIO',
    });
    writeFileSync(
      join(dir, 'broken.ts'),
      "import x from 'no-such-package-here';\nexport default x;\n",
    );
    await expect(loadScenario(join(dir, 'broken.ts'))).rejects.toMatchObject({
      code: 'PB_BAD_SCENARIO',
      message: expect.stringMatching(/failed to load: .*no-such-package-here/),
    });
  });
});

describe('homing devices in regions', () => {
  it('interleaves the regions by share so that every stretch of indices holds each', () => {
    const blocks = interleaveByShare(2400, [
      { region: 'rr', share: 1 },
      { region: 'lc', share: 1 },
    ]);
    const inHalf = (from: number, to: number, region: string) =>
      blocks
        .filter((b) => b.region === region && b.first >= from && b.first < to)
        .reduce((n, b) => n + b.count, 0);
    // Two fleet threads each hold a contiguous half: each gets half of each region, to
    // within one block (1,200 / 32 rounds = 38 devices).
    expect(Math.abs(inHalf(0, 1200, 'rr') - 600)).toBeLessThanOrEqual(38);
    expect(Math.abs(inHalf(1200, 2400, 'rr') - 600)).toBeLessThanOrEqual(38);
    expect(blocks.length).toBeLessThanOrEqual(64);
    // Uneven shares keep their exact totals, and one region stays one block.
    const uneven = interleaveByShare(1000, [
      { region: 'a', share: 0.7 },
      { region: 'b', share: 0.3 },
    ]);
    const total = (r: string) =>
      uneven.filter((b) => b.region === r).reduce((n, b) => n + b.count, 0);
    expect([total('a'), total('b')]).toEqual([700, 300]);
    expect(interleaveByShare(50, [{ region: 'x', share: 1 }])).toEqual([
      { region: 'x', first: 0, count: 50 },
    ]);
  });

  it('numbers the same homes region by region for client hosts: initial then reserve, each region one block', () => {
    const s = validateScenario(
      {
        name: 'homes',
        topology: {
          regions: [
            { name: 'eu', nodes: 1 },
            { name: 'us', nodes: 1 },
          ],
        },
        devices: { count: 1000, regions: { eu: 3, us: 1 } },
        duration: '1s',
        timeline: [{ at: '1s', action: 'connect', devices: 100 }],
      },
      { cores: 2 },
    );
    // Written: interleaved in rounds, the reserve after the initial devices.
    expect(s.devices.regions.length).toBeGreaterThan(4);
    const homed = homeByRegion(s.devices);
    expect(homed.regions).toEqual([
      { region: 'eu', first: 0, count: 750 },
      { region: 'us', first: 750, count: 250 },
      { region: 'eu', first: 1000, count: 75 },
      { region: 'us', first: 1075, count: 25 },
    ]);
    // Nothing else moves.
    expect({ ...homed, regions: [] }).toEqual({ ...s.devices, regions: [] });
  });
});
