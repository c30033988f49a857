/**
 * Validates a scenario section by section. Each section's module under
 * sections/ holds its defaults table (one entry per field it accepts) and
 * its validator; this module validates the top level's own fields and
 * composes the sections, in the order their problems are listed.
 *
 * Adding a field takes its `…Input` and resolved types in types.ts, an entry
 * in its section's defaults table (which the compiler asks for and which makes
 * the field accepted), the line that reads it in the section's validator (which
 * the compiler asks for through the resolved type), and its row in
 * docs/scenarios.md (which test/scenarios/defaults.test.ts asks for).
 */
import { PushbenchError } from '../core/errors.js';
import { heartbeatTimeoutProblem } from '../core/ws/heartbeat.js';
import {
  checkKeys,
  computed,
  type Defaults,
  duration,
  isRecord,
  num,
  OFF,
  Problems,
  REQUIRED,
  section,
} from './fields.js';
import { devicesDefaults, homeDevices, splitByShare, validateDevices } from './sections/devices.js';
import { validateGates } from './sections/gates.js';
import { validateTimeline } from './sections/timeline.js';
import { topologyDefaults, validateTopology } from './sections/topology.js';
import { trafficDefaults, validateTraffic } from './sections/traffic.js';
import type { Scenario, ScenarioInput, ValidationContext } from './types.js';

// Callers of the validator get the types it takes and returns from here too.
export { defineScenario } from './define.js';
export * from './types.js';

/**
 * Defaults of the top level: the run's own fields, and under each section's
 * key that section's table. Only `name`, `devices.count` and `duration` are
 * required.
 */
export const scenarioDefaults = {
  name: REQUIRED,
  description: '',
  topology: topologyDefaults,
  devices: devicesDefaults,
  traffic: trafficDefaults,
  timeline: [],
  duration: REQUIRED,
  deliveryDeadline: '5s',
  workers: computed('half the cores available, at least 1; with TLS one per core'),
  /** Off: preflight works both out from the machine's limits (docs/scenarios.md, Placement). */
  placement: { devicesPerProcess: OFF, sourceAddresses: OFF },
  gates: [],
  seed: 1,
} as const satisfies Defaults<ScenarioInput>;

/**
 * Validates a scenario and fills defaults. Collects every problem first and
 * throws one `PB_BAD_SCENARIO` listing them all, so a user fixes a file in one pass.
 */
export function validateScenario(input: unknown, ctx: ValidationContext): Scenario {
  const p = new Problems();
  const root = section(p, '(scenario)', input);
  checkKeys(p, '', root, scenarioDefaults);
  let name = 'scenario';
  if (typeof root.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(root.name)) {
    p.add('name', 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
  } else {
    name = root.name;
  }
  if (root.description !== undefined && typeof root.description !== 'string') {
    p.add('description', 'must be a string');
  }
  const topology = validateTopology(p, root.topology);
  const devices = validateDevices(p, root.devices, topology.regions);
  checkDeviceHeartbeat(p, devices.heartbeatTimeoutMs, topology.regions);
  const traffic = validateTraffic(p, root.traffic);
  const run = readRun(p, root, ctx, topology.tls !== null);
  const timeline = validateTimeline(
    p,
    root.timeline,
    topology.regions,
    topology.managedRedis,
    // A hub serves more than one node, or a region that grows (topology/cluster.ts).
    topology.redisUrl !== null ||
      topology.managedRedis !== null ||
      topology.regions.reduce((n, r) => n + r.nodes, 0) > 1 ||
      (Array.isArray(root.timeline) &&
        root.timeline.some((t) => isRecord(t) && t.action === 'scale-up')),
    topology.redisUrl !== null || topology.managedRedis !== null,
    {
      rampMs: (devices.count / devices.connectRateHz) * 1000,
      publishMs: run.durationMs,
      count: devices.count,
      connectRateHz: devices.connectRateHz,
    },
  );
  const gates = validateGates(p, root.gates);
  const regions = resolveCapacities(
    p,
    topology.regions,
    splitByShare(devices.count, devices.shares),
  );
  if (p.list.length > 0) {
    const head =
      p.list.length === 1 ? p.list[0] : `${p.list.length} problems: ${p.list.join('; ')}`;
    throw new PushbenchError('PB_BAD_SCENARIO', `scenario ${name}: ${head}`, p.list);
  }
  return {
    name,
    description:
      typeof root.description === 'string' ? root.description : scenarioDefaults.description,
    // Any action but `connect` acts on the network fabric, so devices must go through it.
    topology: {
      ...topology,
      regions,
      balanced: topology.balanced || timeline.some((t) => t.action !== 'connect'),
    },
    devices: homeDevices(devices, timeline),
    traffic,
    timeline,
    durationMs: run.durationMs,
    deliveryDeadlineMs: run.deliveryDeadlineMs,
    workers: run.workers,
    placement: run.placement,
    gates,
    seed: run.seed,
  };
}

/**
 * Each region whose profile gives `capacity` as a percentage gets its own copy
 * of the profile with the count: that percentage of the node's even share of
 * the region's initial devices (rounded, at least 1).
 */
function resolveCapacities(
  p: Problems,
  regions: Scenario['topology']['regions'],
  initial: { region: string; count: number }[],
): Scenario['topology']['regions'] {
  return regions.map((r) => {
    const percent = r.profile.capacityPercent;
    if (percent === null) return r;
    const devices = initial.filter((b) => b.region === r.name).reduce((a, b) => a + b.count, 0);
    if (devices === 0) {
      p.add(
        `topology.profiles.${r.profile.name}.capacity`,
        `"${percent}%" is of a node's share of its region's initial devices, and region ${r.name} starts with none: give a count`,
      );
      return r;
    }
    const share = Math.ceil(devices / Math.max(1, r.nodes));
    const capacity = Math.max(1, Math.round((share * percent) / 100));
    return { ...r, profile: { ...r.profile, capacity } };
  });
}

/**
 * A device that hears nothing for `devices.heartbeatTimeout` drops its
 * connection, and a node pings each connection once per interval: a timeout no
 * longer than a region's interval drops healthy connections (core/ws/heartbeat.ts).
 */
function checkDeviceHeartbeat(
  p: Problems,
  timeoutMs: number | null,
  regions: Scenario['topology']['regions'],
): void {
  if (timeoutMs === null) return;
  const slowest = Math.max(...regions.map((r) => r.profile.heartbeatIntervalMs));
  const problem = heartbeatTimeoutProblem(slowest, timeoutMs);
  if (problem) p.add('devices.heartbeatTimeout', problem);
}

/** The top level's fields that say how the run goes. */
function readRun(
  p: Problems,
  root: Record<string, unknown>,
  ctx: ValidationContext,
  tls: boolean,
): Pick<Scenario, 'durationMs' | 'deliveryDeadlineMs' | 'workers' | 'seed' | 'placement'> {
  const d = scenarioDefaults;
  return {
    durationMs: duration(p, 'duration', root.duration, d.duration, 1),
    deliveryDeadlineMs: duration(p, 'deliveryDeadline', root.deliveryDeadline, d.deliveryDeadline),
    workers: num(p, 'workers', root.workers, defaultDeviceThreads(ctx.cores, tls), {
      min: 1,
      integer: true,
      max: 256,
    }),
    seed: num(p, 'seed', root.seed, d.seed, { min: 0, integer: true }),
    placement: readPlacement(p, root.placement),
  };
}

/**
 * Device worker threads when the scenario names none. Plain: half the cores,
 * at least one. The run's nodes share this machine and its cores: on a 2-core
 * box two device threads beside the node cost the generator 15-38 % more CPU
 * than one for the same built-in, and a fan-out more CPU per message, each
 * thread woken for fewer sockets. Over TLS: one per core, since a device's
 * handshake (~5x a plain connect at the client) is work a herd spreads over
 * threads: one thread lagged in 20 % of a 1,000-device TLS herd's samples, two
 * in 0-2 % (bench/RESULTS.md, sixteenth session).
 */
export function defaultDeviceThreads(cores: number, tls: boolean): number {
  return Math.max(1, tls ? cores : Math.floor(cores / 2));
}

const LOOPBACK = /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function readPlacement(p: Problems, v: unknown): Scenario['placement'] {
  const pl = section(p, 'placement', v);
  const d = scenarioDefaults.placement;
  checkKeys(p, 'placement', pl, d);
  const placement: Scenario['placement'] = {
    devicesPerProcess:
      pl.devicesPerProcess === undefined
        ? d.devicesPerProcess
        : num(p, 'placement.devicesPerProcess', pl.devicesPerProcess, 1, {
            min: 1,
            integer: true,
          }),
    sourceAddresses: d.sourceAddresses,
  };
  if (pl.sourceAddresses !== undefined) {
    const list = pl.sourceAddresses;
    const bad = Array.isArray(list)
      ? list.filter((a) => typeof a !== 'string' || !LOOPBACK.test(a))
      : [list];
    if (!Array.isArray(list) || list.length === 0 || bad.length > 0) {
      p.add(
        'placement.sourceAddresses',
        `must be a non-empty list of loopback addresses (127.x.y.z), got ${JSON.stringify(bad.length > 0 ? bad[0] : list)}`,
      );
    } else {
      placement.sourceAddresses = list as string[];
    }
  }
  return placement;
}
