import { describe, expect, it } from 'vitest';
import { PushbenchError } from '../../core/errors.js';
import {
  checkRun,
  describePreflight,
  formatPreflight,
  type MachineLimits,
  onEngine,
  preflightWarnings,
  refuseIfCapped,
  timelineHerds,
} from '../../run/preflight.js';
import { builtinScenarios } from '../../scenarios/builtin/index.js';
import { type ScenarioInput, validateScenario } from '../../scenarios/schema.js';
import { plannedRoutes } from '../../topology/cluster.js';

const GiB = 2 ** 30;
const machine = (over: Partial<MachineLimits> = {}): MachineLimits => ({
  openFiles: 20_000,
  heapBytes: 4 * GiB,
  ephemeralPorts: 28_232,
  memoryAvailableBytes: 22 * GiB,
  systemFilesFree: 2_400_000,
  cores: 2,
  ...over,
});
const scenario = (input: Partial<ScenarioInput>) =>
  validateScenario({ name: 'p', duration: 1, ...input } as ScenarioInput, { cores: 2 });
const check = (input: Partial<ScenarioInput>, over: Partial<MachineLimits> = {}) => {
  const s = scenario(input);
  return { s, r: checkRun(s, plannedRoutes(s), machine(over)) };
};

describe('preflight', () => {
  it('places 250,000 devices on 13 load processes and a 15-process node, and lets the run go', () => {
    const { s, r } = check({ devices: { count: 250_000 } });
    expect(r.problems).toEqual([]);
    expect(r.placement.processes).toBe(13);
    expect(r.nodeProcesses).toEqual({ local: 15 });
    // 250,000 bound sockets at about 2,048 per region address: 123 addresses.
    expect(plannedRoutes(s)[0]!.localAddresses).toHaveLength(123);
    expect(describePreflight(s, r)).toMatch(
      /^preflight: 250,000 devices on 13 load processes × 1 thread; local nodes 15 processes each; 123 source addresses; memory ~[\d.]+ GiB of 22\.0 GiB available/,
    );
    expect(() => refuseIfCapped(s, r)).not.toThrow();
  });

  // Issue 14: a 2-core CI runner is where the built-ins run; each is sized to fit
  // the preflight's CPU plan there, so none starts with a saturation warning.
  it.each(Object.keys(builtinScenarios))('sizes the built-in %s to fit 2 cores', (name) => {
    const s = validateScenario(builtinScenarios[name], { cores: 2 });
    const r = checkRun(s, plannedRoutes(s), machine());
    expect(r.problems).toEqual([]);
    expect(preflightWarnings(r)).toEqual([]);
    expect(r.checks.find((c) => c.unit === 'cores')?.need).toBeLessThanOrEqual(1.4);
  });

  it('warns, without refusing, when connects and heartbeats need more CPU than the cores give', () => {
    const input = {
      topology: { nodes: 1, heartbeatInterval: '30s' },
      devices: { count: 250_000, connectRate: 5000 },
    } as const;
    const { s, r } = check(input);
    expect(r.problems).toEqual([]);
    expect(() => refuseIfCapped(s, r)).not.toThrow();
    expect(r.warnings).toHaveLength(1);
    // 5,000 connects/s x 600 us + 8,333 heartbeats/s x 50 us + 100 pushes/s x 530 us = 3.47 cores; 70% of 2 is 1.4.
    expect(r.warnings[0]!.need).toBeCloseTo(3.47, 2);
    expect(r.warnings[0]!.allowed).toBeCloseTo(1.4, 5);
    expect(preflightWarnings(r)[0]).toMatch(
      /^preflight warning: cpu estimate, both ends \(5,000 connects\/s, 8,333 heartbeats\/s, 100 msgs\/s; 70% of 2 cores\) needs ~3\.47 cores, 1\.40 fit: expect a saturated generator \(an INVALID result\); lower --connect-rate to about 1,500/,
    );
    expect(formatPreflight(s, r)).toMatch(/\nWARN cpu estimate/);
    // The same run at a rate that fits, on eight cores, or where cores are unknown: no warning.
    expect(check({ ...input, devices: { count: 250_000, connectRate: 1000 } }).r.warnings).toEqual(
      [],
    );
    expect(check(input, { cores: 8 }).r.warnings).toEqual([]);
    expect(check(input, { cores: null }).r.checks.some((c) => c.unit === 'cores')).toBe(false);
  });

  it('counts room fan-out as deliveries: every member of a room gets each publish', () => {
    const { r } = check({
      devices: { count: 20_000, connectRate: 100 },
      traffic: { direct: { rate: 0 }, rooms: { count: 1, perDevice: 1, rate: 10 } },
    });
    expect(r.warnings[0]?.what).toMatch(/200,000 msgs\/s/);
    expect(preflightWarnings(r)[0]).toMatch(/heartbeats and traffic alone exceed it/);
  });

  it('counts periodic reconnects as connects: regional-latency at 20,000 devices reconnects ~4,400 a second', () => {
    const rl = builtinScenarios['regional-latency'] as ScenarioInput;
    const { r } = check({ ...rl, devices: { ...rl.devices, count: 20_000 } });
    // every 6 s minus rand(0, 3 s): 4.5 s on average, 20,000 / 4.5 = 4,444 a second.
    expect(r.warnings[0]?.what).toMatch(/1,000 connects\/s, 4,444 periodic reconnects\/s, /);
    expect(r.warnings[0]!.need).toBeGreaterThan(3);
    expect(preflightWarnings(r)[0]).toMatch(
      /periodic reconnects, heartbeats and traffic alone exceed it; lengthen devices\.periodicReconnect\.every, /,
    );
  });

  it("adds the relays' CPU on the kernel engine: balancer-scale-up at 10x fits without them and not with them", () => {
    // 48,000 devices at 1,000 connects/s, 10 s heartbeats, builtin balancers: relay processes.
    const bsu = builtinScenarios['balancer-scale-up'] as ScenarioInput;
    const tenX = scenario({
      ...bsu,
      devices: { ...bsu.devices, count: 24_000, connectRate: 1000 },
      topology: { ...bsu.topology, network: 'kernel' },
    });
    const cpu = (engine: 'userland' | 'kernel') =>
      checkRun(tenX, plannedRoutes(tenX), machine(), engine).checks.find((c) =>
        c.what.startsWith('cpu estimate'),
      )!;
    const kernel = cpu('kernel');
    expect(kernel.what).toMatch(
      /^cpu estimate, both ends and relays \(1,000 connects\/s, 4,800 heartbeats/,
    );
    // Connects 1,000 x 350 us, heartbeats 4,800 x 75 us, messages 100 x 40 us on top of the rest.
    const userland = cpu('userland');
    expect(userland.what).not.toMatch(/relays/);
    expect(kernel.need - userland.need).toBeCloseTo(0.35 + 0.36 + 0.004, 3);
    expect(userland.ok).toBe(true);
    expect(kernel.ok).toBe(false);
  });

  it('warns when a connect wave would still be starting devices when publishing ends, saying how many start', () => {
    const bsu = builtinScenarios['balancer-scale-up'] as ScenarioInput;
    const at = (count: number) => check({ ...bsu, devices: { ...bsu.devices, count } }).r;
    // 20,000: ramp 33.3 s, the wave of 20,000 at 600/s from 12 s after it ends at 78.7 s,
    // publishing at 79.3 s.
    const fits = at(20_000).checks.find((c) => c.what.startsWith('timeline: connect +20000 '))!;
    expect(fits.ok).toBe(true);
    expect(fits.need).toBeCloseTo(78.67, 1);
    expect(preflightWarnings(at(20_000), 'seconds')).toEqual([]);
    // 40,000: the wave would end at 145.3 s, publishing at 112.7 s: 20,400 start.
    expect(preflightWarnings(at(40_000), 'seconds')).toEqual([
      "preflight warning: timeline: connect +40000 at 600/s, done before publishing ends (ramp ~66.7 s + duration): it ends at ~145.3 s, publishing at ~112.7 s: about 20,400 of its 40,000 devices start before the end: lengthen duration by 33 s or raise the wave's rate",
    ]);
    expect(preflightWarnings(at(40_000), 'cores')).toEqual(
      preflightWarnings(at(40_000)).slice(0, -1),
    );
  });

  it('finds the herds of the timeline: a kill, a killing scale-down, a reset; not a drain or the last node', () => {
    const herds = (timeline: unknown[], nodes = 4) =>
      timelineHerds(
        scenario({
          topology: { nodes },
          devices: { count: 8000 },
          timeline,
        } as Partial<ScenarioInput>),
      ).map((h) => [h.label, h.lost, h.nodes]);
    expect(herds([{ at: '5s', action: 'kill-node', node: 'local-2', label: 'k' }])).toEqual([
      ['k', 2000, 3],
    ]);
    expect(
      herds([
        { at: '5s', action: 'scale-down', region: 'local', nodes: 2, graceful: false, label: 'sd' },
        { at: '9s', action: 'reset', region: 'local', label: 'r' },
      ]),
    ).toEqual([
      ['sd', 4000, 2],
      ['r', 8000, 4],
    ]);
    expect(herds([{ at: '5s', action: 'reset', node: 'local-1', label: 'r1' }])).toEqual([
      ['r1', 2000, 4],
    ]);
    expect(
      herds([{ at: '5s', action: 'scale-down', region: 'local', nodes: 1, graceful: true }]),
    ).toEqual([]);
    expect(herds([{ at: '5s', action: 'kill-node', node: 'local-1' }], 1)).toEqual([]);
  });

  it("plans a herd's CPU from the reconnect spread and the connect timeout, not --connect-rate", () => {
    const nk = builtinScenarios['node-kill'] as ScenarioInput;
    const at = (count: number, devices: Partial<ScenarioInput['devices']> = {}) => {
      const s = scenario({
        ...nk,
        devices: { ...nk.devices, count, connectTimeout: '5s', ...devices },
      });
      return checkRun(s, plannedRoutes(s), machine(), 'kernel');
    };
    const herd = (r: ReturnType<typeof at>) => r.checks.find((c) => /the herd of /.test(c.what))!;
    const ramp = (r: ReturnType<typeof at>) =>
      r.checks.find((c) => c.unit === 'cores' && !/herd/.test(c.what))!;
    // 10,000: 2,500 devices within 500 ms of full jitter + half the 5 s connect timeout: 833/s.
    const r10 = at(10_000);
    expect(herd(r10).what).toBe(
      'cpu estimate, both ends and relays, the herd of kill (~2,500 devices onto 3 nodes within 3000ms: 500ms of reconnect spread + half the 5000ms connect timeout, ~833 connects/s; 70% of 2 cores)',
    );
    // On top of what the ramp's check counts for the held fleet: 833/s x (600 + 350) us.
    const steady = ramp(r10).need - (1000 * 950) / 1e6;
    expect(herd(r10).need).toBeCloseTo(steady + (833.33 * 950) / 1e6, 3);
    expect(herd(r10).ok).toBe(true);
    // 20,000 does not fit, whatever the ramp's rate, and says what spreads the herd.
    const r20 = at(20_000, { connectRate: 200 });
    expect(ramp(r20).ok).toBe(true);
    expect(herd(r20).ok).toBe(false);
    expect(preflightWarnings(r20, 'cores')).toEqual([
      expect.stringMatching(
        /^preflight warning: cpu estimate, both ends and relays, the herd of kill \(~5,000 devices .*~1,667 connects\/s.* needs ~[\d.]+ cores, 1\.40 fit: expect connect timeouts, retries on top of the herd and a saturated generator \(an INVALID result\): widen devices\.reconnect's first window \(500ms now\), lengthen devices\.connectTimeout, or use fewer devices$/,
      ),
    ]);
    // Spread over 5 s of jitter and half a 10 s timeout it fits.
    expect(
      herd(at(20_000, { connectRate: 200, reconnect: 'full-jitter:5s:30s', connectTimeout: '10s' }))
        .ok,
    ).toBe(true);
  });

  it("weighs a node's CPU quota against its share of the ramp and of the worst herd, as the nodes' warning", () => {
    const nk = builtinScenarios['node-kill'] as ScenarioInput;
    const at = (cpu: number | undefined, connectRate = 400) =>
      check({
        ...nk,
        devices: { ...nk.devices, count: 10_000, connectRate, connectTimeout: '5s' },
        topology: { ...nk.topology, ...(cpu !== undefined && { profiles: { default: { cpu } } }) },
      }).r;
    const quota = (r: ReturnType<typeof at>) => r.checks.filter((c) => c.about === 'nodes');
    expect(quota(at(undefined))).toEqual([]);
    // The herd: 2,500 devices onto 3 nodes within 3 s, 278/s each, over the ramp's 100/s.
    const [tight] = quota(at(0.1));
    expect(tight!.what).toBe(
      'cpu estimate, one node of local under its 0.1-core quota (profile default; ~278 connects/s in the herd of kill, 250 heartbeats/s)',
    );
    // 0.03 + 278 x 600 us + 250 x 50 us + a quarter of 500 pushes/s x 530 us, halved.
    expect(tight!.need).toBeCloseTo(0.03 + 0.1667 + 0.0125 + 0.0331, 3);
    expect(tight!.ok).toBe(false);
    const warned = at(0.1);
    expect(preflightWarnings(warned, 'nodes')).toEqual([
      expect.stringMatching(
        /its quota is 0\.10: expect the nodes, not the generator, to fall behind: .*raise profiles\.default\.cpu, or spread the herd/,
      ),
    ]);
    expect(preflightWarnings(warned, 'cores')).toEqual([]);
    expect(quota(at(0.3))[0]!.ok).toBe(true);
    // A ramp faster than the herd is the worst moment: 4,000/s over 4 nodes.
    expect(quota(at(0.3, 4000))[0]!.what).toMatch(/~1,000 connects\/s in the ramp/);
  });

  it('refuses what memory cannot hold, saying how many devices would fit', () => {
    const { s, r } = check({ devices: { count: 1_000_000 } });
    expect(r.problems.map((p) => p.what)).toEqual([
      'memory, all processes and kernel sockets (~24.0 KiB per device)',
    ]);
    expect(() => refuseIfCapped(s, r)).toThrowError(
      /1,000,000 devices will not fit: memory.*needs [\d.]+ GiB but 22\.0 GiB are allowed: run at most [\d,]+ devices here, or free memory/,
    );
    expect(formatPreflight(s, r)).toMatch(/FAIL memory.*\n {5}-> run at most/);
  });

  it('names the network fabric as the cap of a balanced run and how to lift it', () => {
    const { s, r } = check({ topology: { nodes: 2 }, devices: { count: 12_000 } });
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.what).toMatch(/network fabric/);
    try {
      refuseIfCapped(s, r);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PushbenchError);
      expect((err as PushbenchError).code).toBe('PB_LIMIT');
      expect((err as Error).message).toMatch(
        /12,000 devices will not fit: open files, network fabric.* needs 24,200 but 20,000 are allowed: the fabric is one process: raise it with `ulimit -n 24200` where the hard limit allows, or run at most 9,900 devices, or use topology.network "kernel" \(docs\/network.md\), or drop balancers and faults/,
      );
    }
    // On the kernel engine no process relays the bytes: the same run fits.
    const onKernel = scenario({ topology: { nodes: 2 }, devices: { count: 12_000 } });
    expect(
      checkRun(onKernel, plannedRoutes(onKernel), machine(), 'kernel').problems.map((p) => p.what),
    ).toEqual([]);
    // Regions on the kernel engine: each on its own client host, placed from the scenario as
    // written (interleaved) as well as from the one the run numbers region by region.
    const regional = scenario({
      topology: {
        regions: [
          { name: 'eu', nodes: 1 },
          { name: 'us', nodes: 1 },
        ],
      },
      devices: { count: 30_000, regions: { eu: 2, us: 1 } },
    });
    for (const s of [regional, onEngine(regional, 'kernel')]) {
      const placed = checkRun(s, plannedRoutes(s), machine(), 'kernel');
      expect(placed.problems).toEqual([]);
      expect(placed.placement.clientHosts).toEqual(['eu', 'eu', 'us']);
    }
    // The same run with a raised limit goes.
    expect(
      check({ topology: { nodes: 2 }, devices: { count: 12_000 } }, { openFiles: 65_536 }).r
        .problems,
    ).toEqual([]);
  });

  it('refuses a node profile whose explicit processes cannot hold its share', () => {
    const { r } = check({
      topology: { nodes: 1, profiles: { default: { processes: 1 } } },
      devices: { count: 30_000 },
    });
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.lift).toMatch(/profile `processes: 2`/);
  });

  it('refuses a route whose fixed source addresses run out of ports', () => {
    // 100 ports per address: 80 usable. The route was planned with this machine's real
    // port range (15 addresses for 30,000), so 15 x 80 = 1,200 devices fit.
    const { s, r } = check({ devices: { count: 30_000 } }, { ephemeralPorts: 100 });
    expect(plannedRoutes(s)[0]!.localAddresses).toHaveLength(15);
    expect(r.problems.map((p) => p.what)).toEqual([
      'ephemeral ports per source address, local (15 addresses)',
    ]);
    expect(r.problems[0]!.lift).toMatch(/run at most 1,200 devices in local/);
  });

  it('counts the system-wide file table', () => {
    const { r } = check({ devices: { count: 50_000 } }, { systemFilesFree: 60_000 });
    expect(r.problems.map((p) => p.what)).toEqual(['open files, system-wide (fs.file-max)']);
    expect(r.problems[0]!.lift).toBe('raise fs.file-max (sysctl -w fs.file-max=200000)');
  });
});
