import { PushbenchError } from '../core/errors.js';
import { parseDurationMs } from '../core/units.js';

/** A duration as written in a scenario: `"20s"`, `"500ms"`, or a number of milliseconds. */
export type DurationInput = string | number;

/**
 * A scenario as its author writes it (in TypeScript via {@link defineScenario}, or JSON).
 * Every field but `name`, `devices.count` and `duration` has a default, listed in docs/scenarios.md.
 */
export interface ScenarioInput {
  /** Short name, used in the results folder name. */
  name: string;
  /** One line saying what the scenario shows. */
  description?: string;
  /** What the devices connect to. */
  topology?: {
    /** Reference nodes to start. Only 1 until clusters land. Default 1. */
    nodes?: number;
    /** Heartbeat ping period of the nodes. Default `10s`. */
    heartbeatInterval?: DurationInput;
    /** Silence after which a node closes a connection. Default `30s`. */
    heartbeatTimeout?: DurationInput;
  };
  /** The simulated device fleet. */
  devices: {
    /** Devices to connect. */
    count: number;
    /** New connections started per second, open-loop, across all workers. Default 1000. */
    connectRate?: number;
    /** An attempt not upgraded within this is abandoned. Default `10s`. */
    connectTimeout?: DurationInput;
    /** Accounts the devices are spread over (device i belongs to account i mod accounts). Default 100. */
    accounts?: number;
  };
  /** What services send to devices. */
  traffic?: {
    /** Direct pushes (`POST /v1/push/{device}`) to random connected devices. */
    direct?: {
      /** Pushes per second, open-loop, evenly spaced. Default 100. */
      rate?: number;
      /** Padding added to each payload, bytes. Default 64. */
      payloadBytes?: number;
    };
  };
  /** How long the publishers run once the fleet is connected. */
  duration: DurationInput;
  /** How long after the last send a message may still arrive and count as delivered. Default `5s`. */
  deliveryDeadline?: DurationInput;
  /** Device worker threads. Default: one per core. */
  workers?: number;
  /** Gate expressions, e.g. `delivery >= 99.9%`, `p99(push) < 50ms`. */
  gates?: string[];
  /** Seed for every random choice in the run. Default 1. */
  seed?: number;
}

/** A validated scenario with every default filled and every duration in milliseconds. */
export interface Scenario {
  name: string;
  description: string;
  topology: { nodes: number; heartbeatIntervalMs: number; heartbeatTimeoutMs: number };
  devices: { count: number; connectRateHz: number; connectTimeoutMs: number; accounts: number };
  traffic: { direct: { rateHz: number; payloadBytes: number } };
  durationMs: number;
  deliveryDeadlineMs: number;
  workers: number;
  gates: string[];
  seed: number;
}

/** Declares a scenario with type checking; the value is validated when it is run. */
export function defineScenario(input: ScenarioInput): ScenarioInput {
  return input;
}

/** Collects problems as `path: what is wrong` lines. */
class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(
  p: Problems,
  path: string,
  obj: Record<string, unknown>,
  allowed: string[],
): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      p.add(path ? `${path}.${key}` : key, `unknown field (known: ${allowed.join(', ')})`);
    }
  }
}

function section(p: Problems, path: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isRecord(v)) {
    p.add(path, 'must be an object');
    return {};
  }
  return v;
}

function num(
  p: Problems,
  path: string,
  v: unknown,
  fallback: number | undefined,
  rule: { min: number; integer?: boolean; max?: number },
): number {
  if (v === undefined) {
    if (fallback === undefined) p.add(path, 'is required');
    return fallback ?? 0;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    p.add(path, `must be a number, got ${JSON.stringify(v)}`);
    return fallback ?? 0;
  }
  if (rule.integer && !Number.isInteger(v)) p.add(path, `must be a whole number, got ${v}`);
  if (v < rule.min) p.add(path, `must be >= ${rule.min}, got ${v}`);
  if (rule.max !== undefined && v > rule.max) p.add(path, `must be <= ${rule.max}, got ${v}`);
  return v;
}

function duration(
  p: Problems,
  path: string,
  v: unknown,
  fallback: number | undefined,
  minMs = 0,
): number {
  if (v === undefined) {
    if (fallback === undefined) p.add(path, 'is required');
    return fallback ?? 0;
  }
  if (typeof v !== 'string' && typeof v !== 'number') {
    p.add(path, `must be a duration like "20s", got ${JSON.stringify(v)}`);
    return fallback ?? 0;
  }
  try {
    const ms = parseDurationMs(v, path);
    if (ms < minMs) p.add(path, `must be at least ${minMs}ms, got ${JSON.stringify(v)}`);
    return ms;
  } catch (err) {
    p.add(path, `must be a duration like "20s" or a number of ms, got ${JSON.stringify(v)}`);
    void err;
    return fallback ?? 0;
  }
}

/** Facts about the machine that defaults depend on. */
export interface ValidationContext {
  /** Cores available to this process. */
  cores: number;
}

/**
 * Validates a scenario and fills defaults. Collects every problem first and
 * throws one `PB_BAD_SCENARIO` listing them all, so a user fixes a file in one pass.
 */
export function validateScenario(input: unknown, ctx: ValidationContext): Scenario {
  const p = new Problems();
  const root = section(p, '(scenario)', input);
  checkKeys(p, '', root, [
    'name',
    'description',
    'topology',
    'devices',
    'traffic',
    'duration',
    'deliveryDeadline',
    'workers',
    'gates',
    'seed',
  ]);
  let name = 'scenario';
  if (typeof root.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(root.name)) {
    p.add('name', 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
  } else {
    name = root.name;
  }
  if (root.description !== undefined && typeof root.description !== 'string') {
    p.add('description', 'must be a string');
  }

  const topo = section(p, 'topology', root.topology);
  checkKeys(p, 'topology', topo, ['nodes', 'heartbeatInterval', 'heartbeatTimeout']);
  const nodes = num(p, 'topology.nodes', topo.nodes, 1, { min: 1, integer: true });
  if (nodes > 1) p.add('topology.nodes', `clusters are not supported yet; use 1, got ${nodes}`);
  const heartbeatIntervalMs = duration(
    p,
    'topology.heartbeatInterval',
    topo.heartbeatInterval,
    10_000,
    10,
  );
  const heartbeatTimeoutMs = duration(
    p,
    'topology.heartbeatTimeout',
    topo.heartbeatTimeout,
    30_000,
    10,
  );

  const dev = section(p, 'devices', root.devices);
  if (root.devices === undefined) p.add('devices', 'is required');
  checkKeys(p, 'devices', dev, ['count', 'connectRate', 'connectTimeout', 'accounts']);
  const count = num(p, 'devices.count', dev.count, root.devices === undefined ? 0 : undefined, {
    min: 1,
    integer: true,
  });
  const connectRateHz = num(p, 'devices.connectRate', dev.connectRate, 1000, { min: 1 });
  const connectTimeoutMs = duration(p, 'devices.connectTimeout', dev.connectTimeout, 10_000, 1);
  const accounts = num(p, 'devices.accounts', dev.accounts, 100, { min: 1, integer: true });

  const traffic = section(p, 'traffic', root.traffic);
  checkKeys(p, 'traffic', traffic, ['direct']);
  const direct = section(p, 'traffic.direct', traffic.direct);
  checkKeys(p, 'traffic.direct', direct, ['rate', 'payloadBytes']);
  const rateHz = num(p, 'traffic.direct.rate', direct.rate, 100, { min: 0 });
  const payloadBytes = num(p, 'traffic.direct.payloadBytes', direct.payloadBytes, 64, {
    min: 0,
    integer: true,
    max: 60 * 1024,
  });

  const durationMs = duration(p, 'duration', root.duration, undefined, 1);
  const deliveryDeadlineMs = duration(p, 'deliveryDeadline', root.deliveryDeadline, 5000);
  const workers = num(p, 'workers', root.workers, Math.max(1, ctx.cores), {
    min: 1,
    integer: true,
    max: 256,
  });
  const seed = num(p, 'seed', root.seed, 1, { min: 0, integer: true });
  let gates: string[] = [];
  if (root.gates !== undefined) {
    if (!Array.isArray(root.gates) || !root.gates.every((g) => typeof g === 'string')) {
      p.add('gates', 'must be a list of strings like "p99(push) < 50ms"');
    } else {
      gates = root.gates;
    }
  }
  if (p.list.length > 0) {
    const head =
      p.list.length === 1 ? p.list[0] : `${p.list.length} problems: ${p.list.join('; ')}`;
    throw new PushbenchError('PB_BAD_SCENARIO', `scenario ${name}: ${head}`, p.list);
  }
  return {
    name,
    description: typeof root.description === 'string' ? root.description : '',
    topology: { nodes, heartbeatIntervalMs, heartbeatTimeoutMs },
    devices: { count, connectRateHz, connectTimeoutMs, accounts },
    traffic: { direct: { rateHz, payloadBytes } },
    durationMs,
    deliveryDeadlineMs,
    workers,
    gates,
    seed,
  };
}
