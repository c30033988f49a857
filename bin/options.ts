/**
 * The flags of every `pushbench` command, typed. Each command has:
 *
 * - a `<Command>Flags` interface: what commander hands over once every flag's
 *   parser has run (units such as "30s" and whole numbers are parsed here,
 *   once, at the edge);
 * - a flag table of commander `Option`s keyed by those fields, in the order
 *   `--help` lists them. The table's type makes a field without a flag, or a
 *   flag without a field, fail to compile; a test checks that each key is the
 *   name commander files the flag's value under;
 * - where flags need checking or combining, one function that turns them into
 *   the options of the API call the command makes.
 *
 * Commander does not type option values, so `command.opts<Flags>()` trusts the
 * table: each option's parser, choices and default produce its field's type.
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, Option } from 'commander';
// Values from the modules that define them, not from index.js: `serve` must
// load the server and the flag parsers, not the harness (a node boots faster).
import { type PlanInput, parseReconnectSpec } from '../capacity/plan.js';
import { PushbenchError } from '../core/errors.js';
import { parseDurationMs } from '../core/units.js';
import { version } from '../core/version.js';
import { defaultHeartbeatTimeoutMs, heartbeatTimeoutProblem } from '../core/ws/heartbeat.js';
import type { CapacityOptions, CapacityReport, ModelCheckOptions, RunOptions } from '../index.js';
import type { K8sAgentsOptions } from '../loadgen/join/k8s.js';
import { parseSshTargets } from '../loadgen/join/ssh.js';
import { defaultResultsDir } from '../reports/outputs/results-dir.js';
import {
  type MatrixAxis,
  parseAssignment,
  parseMatrixAxis,
  type ScenarioOverrides,
} from '../scenarios/load.js';
import { BALANCER_ALGORITHMS, type BalancerAlgorithmName } from '../scenarios/types.js';
import { parseD2dAllow } from '../server/d2d.js';
import { type NodeOptions, nodeDefaults, readNodeTls } from '../server/node.js';
import type { ServeOptions } from '../server/serve.js';
import { type DeviceClaims, isValidId } from '../server/token.js';

/** Commander options keyed by the field of `Flags` each one fills. */
export type FlagTable<Flags> = { readonly [K in keyof Flags]-?: Option };

function integer(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n)) {
      throw new InvalidArgumentError(`${flag} must be a whole number, got "${value}"`);
    }
    return n;
  };
}

function number(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) {
      throw new InvalidArgumentError(`${flag} must be a number, got "${value}"`);
    }
    return n;
  };
}

function durationMs(flag: string) {
  return (value: string): number => {
    try {
      return parseDurationMs(value, flag);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** The long flag of `flags`, e.g. `--devices` of `--devices <n>`: the name errors use. */
function longFlag(flags: string): string {
  return flags.split(' ')[0] ?? flags;
}

/** A flag whose value is a whole number. */
function whole(flags: string, description: string, fallback?: number): Option {
  return new Option(flags, description).argParser(integer(longFlag(flags))).default(fallback);
}

/** A flag whose value is a finite number. */
function decimal(flags: string, description: string, fallback?: number): Option {
  return new Option(flags, description).argParser(number(longFlag(flags))).default(fallback);
}

/** A flag whose value is a duration ("500ms", "20s", or ms), parsed to milliseconds. */
function duration(flags: string, description: string, fallback?: number): Option {
  return new Option(flags, description).argParser(durationMs(longFlag(flags))).default(fallback);
}

/** A flag that may be given several times; its values are collected in order. */
function repeated(flags: string, description: string): Option {
  return new Option(flags, description).argParser(collect);
}

/** A flag whose value is one of `choices`. */
function oneOf<T extends string>(
  flags: string,
  description: string,
  choices: readonly T[],
  fallback: T,
): Option {
  return new Option(flags, description).choices(choices).default(fallback);
}

// ---------------------------------------------------------------- run

/** Flags of `pushbench run`. */
export interface RunFlags {
  devices?: number;
  rate?: number;
  duration?: string;
  workers?: number;
  connectRate?: number;
  gate?: string[];
  seed?: number;
  set?: string[];
  matrix?: string[];
  repeat?: number;
  out?: string;
  junit?: string;
  summary?: string;
  json?: boolean;
  preflight?: boolean;
  agents?: number;
  listen?: string;
  agentToken?: string;
  agentsTimeout?: number;
  ssh?: string;
  sshCommand?: string;
  sshOption?: string[];
  agentTlsCert?: string;
  agentTlsKey?: string;
  agentsTolerate?: string;
}

/** The flag table of `pushbench run`. */
export const runFlags: FlagTable<RunFlags> = {
  devices: whole('--devices <n>', 'devices to connect'),
  rate: decimal('--rate <hz>', 'direct pushes per second'),
  duration: new Option('--duration <time>', 'how long to publish, e.g. 20s'),
  workers: whole(
    '--workers <n>',
    'device worker threads (default: half the cores, at least 1; with TLS one per core)',
  ),
  connectRate: decimal('--connect-rate <hz>', 'new connections per second'),
  gate: repeated(
    '--gate <expr>',
    'gate, e.g. "p99(push) < 50ms" (repeatable; added to the scenario\'s)',
  ),
  seed: whole('--seed <n>', 'seed for every random choice'),
  set: repeated(
    '--set <path=value>',
    'set any scenario field, e.g. devices.connectTimeout=5s (repeatable)',
  ),
  matrix: repeated(
    '--matrix <field=a,b>',
    'run one variant per value (repeatable: every combination) and compare them',
  ),
  repeat: whole(
    '--repeat <n>',
    'run it n times (each variant, alternating A B A B) and report medians, spread and what is significant',
  ),
  out: new Option('--out <dir>', 'results folder (default results/<scenario>-<time>)'),
  junit: new Option('--junit <file>', 'write a JUnit XML file, one testcase per gate'),
  summary: new Option('--summary <file>', 'write a Markdown summary (for a CI job summary)'),
  json: new Option('--json', 'print report.json on stdout instead of the summary'),
  preflight: new Option(
    '--preflight',
    'only check what the run needs (files, ports, memory) against this machine and print where it would be placed',
  ),
  agents: whole(
    '--agents <n>',
    'run every device on n load agents on other hosts (`pushbench agent --join`), wait for them first',
  ),
  listen: new Option(
    '--listen <host:port>',
    'with --agents: the address agents join at; the devices connect to this host too',
  ),
  agentToken: new Option(
    '--agent-token <token>',
    'with --agents: the token agents must bring (default: a random one, printed)',
  ).env('PUSHBENCH_AGENT_TOKEN'),
  agentsTimeout: duration(
    '--agents-timeout <time>',
    'with --agents: how long to wait for them',
    120_000,
  ),
  ssh: new Option(
    '--ssh <user@host,...>',
    'start an agent on each host over ssh (batch mode), same pushbench version checked; implies --agents',
  ),
  sshCommand: new Option(
    '--ssh-command <cmd>',
    'with --ssh: the command that runs pushbench on those hosts',
  ).default('pushbench'),
  sshOption: repeated(
    '--ssh-option <opt>',
    'with --ssh: an ssh -o option, e.g. IdentityFile=~/.ssh/load (repeatable)',
  ),
  agentTlsCert: new Option(
    '--agent-tls-cert <file>',
    'with --agents: serve the join channel as wss:// with this certificate (PEM)',
  ),
  agentTlsKey: new Option('--agent-tls-key <file>', 'with --agent-tls-cert: its private key (PEM)'),
  agentsTolerate: new Option(
    '--agents-tolerate <share>',
    'with --agents: go on when agents holding at most this share of the devices are lost (e.g. 10%); default: any loss ends the run (exit 6)',
  ),
};

/** `HOST:PORT` of `--listen`; throws `PB_USAGE` with the flag's value. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !(port >= 1 && port <= 65_535)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--listen must be HOST:PORT with a port 1-65535, e.g. 10.0.0.5:7400; got "${value}"`,
    );
  }
  return { host: m[1]!, port };
}

/** `--agents-tolerate`: `10%` or `0.1`, in [0, 1). */
function parseShare(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value.trim());
  const share = m ? Number(m[1]) / (m[2] === '%' ? 100 : 1) : Number.NaN;
  if (!(share >= 0 && share < 1)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--agents-tolerate must be a share below 100%, e.g. 10% or 0.1; got "${value}"`,
    );
  }
  return share;
}

/** `--agent-tls-cert` and `--agent-tls-key`, both or neither. */
function tlsFiles(flags: RunFlags): { certFile: string; keyFile: string } | undefined {
  if (flags.agentTlsCert === undefined && flags.agentTlsKey === undefined) return undefined;
  if (flags.agentTlsCert === undefined || flags.agentTlsKey === undefined) {
    throw new PushbenchError('PB_USAGE', '--agent-tls-cert and --agent-tls-key go together');
  }
  return { certFile: flags.agentTlsCert, keyFile: flags.agentTlsKey };
}

/** `--agents` and its companions as {@link RunOptions.agents}, or undefined without `--agents`. */
function agentsOption(flags: RunFlags): RunOptions['agents'] {
  const targets = flags.ssh === undefined ? undefined : parseSshTargets(flags.ssh);
  const count = flags.agents ?? targets?.length;
  if (count === undefined) {
    if (flags.listen !== undefined) {
      throw new PushbenchError('PB_USAGE', '--listen only goes with --agents N');
    }
    return undefined;
  }
  flags.agents = count;
  if (targets !== undefined && count < targets.length) {
    throw new PushbenchError(
      'PB_USAGE',
      `--agents ${count} is fewer than the ${targets.length} hosts --ssh names`,
    );
  }
  if (flags.agents < 1 || flags.agents > 10_000) {
    throw new PushbenchError('PB_USAGE', `--agents must be 1-10000, got ${flags.agents}`);
  }
  if (flags.listen === undefined) {
    throw new PushbenchError(
      'PB_USAGE',
      '--agents needs --listen HOST:PORT: the address agents (and their devices) reach this machine at',
    );
  }
  const token = flags.agentToken ?? randomBytes(18).toString('base64url');
  if (token.length < 8) {
    throw new PushbenchError('PB_USAGE', '--agent-token must be at least 8 characters');
  }
  return {
    count: flags.agents,
    ...parseListen(flags.listen),
    token,
    timeoutMs: flags.agentsTimeout ?? 120_000,
    ...(tlsFiles(flags) && { tls: tlsFiles(flags) }),
    ...(flags.agentsTolerate !== undefined && { tolerateShare: parseShare(flags.agentsTolerate) }),
    ...(targets && {
      ssh: {
        targets,
        command: flags.sshCommand ?? 'pushbench',
        options: flags.sshOption ?? [],
      },
    }),
  };
}

/**
 * What `pushbench run` was asked to do: only check the run against this
 * machine, run the scenario once, or run one variant per matrix combination.
 * `options` carries no listener; the command line picks one.
 */
export type RunRequest =
  | { kind: 'preflight'; overrides: ScenarioOverrides }
  | { kind: 'single'; options: RunOptions; json: boolean }
  | {
      kind: 'matrix';
      options: RunOptions & { outDir: string };
      axes: MatrixAxis[];
      json: boolean;
    }
  | {
      kind: 'repeat';
      options: RunOptions & { outDir: string };
      axes: MatrixAxis[];
      repeat: number;
      json: boolean;
    };

/**
 * Turns `run`'s flags into a {@link RunRequest}. A preflight reads only the
 * flags that size the run (the others, `--matrix` included, go unread).
 * Throws `PB_USAGE` on a bad `--set` or `--matrix`, or `--junit` with
 * `--matrix`. `now` names the default matrix folder.
 */
export function parseRunFlags(scenario: string, flags: RunFlags, now = new Date()): RunRequest {
  const set = Object.fromEntries((flags.set ?? []).map(parseAssignment));
  if (flags.preflight === true) {
    const { devices, workers, connectRate } = flags;
    return { kind: 'preflight', overrides: { devices, workers, connectRate, set } };
  }
  const json = flags.json === true;
  const agents = agentsOption(flags);
  const options: RunOptions = {
    ...(agents && { agents }),
    devices: flags.devices,
    rate: flags.rate,
    duration: flags.duration,
    workers: flags.workers,
    connectRate: flags.connectRate,
    gates: flags.gate,
    seed: flags.seed,
    set,
    outDir: flags.out,
    junit: flags.junit,
    summary: flags.summary,
  };
  const axes = (flags.matrix ?? []).map(parseMatrixAxis);
  const repeat = flags.repeat ?? 1;
  if (repeat < 1 || repeat > 100) {
    throw new PushbenchError('PB_USAGE', `--repeat must be 1-100, got ${repeat}`);
  }
  if (axes.length === 0 && repeat === 1) return { kind: 'single', options, json };
  if (agents) {
    throw new PushbenchError(
      'PB_USAGE',
      '--agents runs one run: drop --matrix and --repeat (agents join one run at a time)',
    );
  }
  if (options.junit) {
    throw new PushbenchError(
      'PB_USAGE',
      `--junit is per run; with ${repeat > 1 ? '--repeat' : '--matrix'} use \`pushbench report <run dir> --junit FILE\``,
    );
  }
  // The scenario's file name without folder and extension (or the built-in's name).
  const name = scenario.replace(/^.*[\\/]/, '').replace(/\.\w+$/, '');
  if (repeat > 1) {
    const outDir = options.outDir ?? defaultResultsDir(`${name}-repeat`, now);
    return { kind: 'repeat', options: { ...options, outDir }, axes, repeat, json };
  }
  const outDir = options.outDir ?? defaultResultsDir(`${name}-matrix`, now);
  return { kind: 'matrix', options: { ...options, outDir }, axes, json };
}

// ---------------------------------------------------------------- compare, report

/** Flags of `pushbench compare`. */
export interface CompareFlags {
  out?: string;
  json?: boolean;
}

/** The flag table of `pushbench compare`. */
export const compareFlags: FlagTable<CompareFlags> = {
  out: new Option(
    '--out <dir>',
    'also write comparison.json, comparison.md and comparison.html here',
  ),
  json: new Option('--json', 'print the comparison as JSON'),
};

/** Flags of `pushbench report`. */
export interface ReportFlags {
  junit?: string;
  summary?: string;
  json?: boolean;
}

/** The flag table of `pushbench report`. */
export const reportFlags: FlagTable<ReportFlags> = {
  junit: new Option('--junit <file>', 'write a JUnit XML file'),
  summary: new Option('--summary <file>', 'write a Markdown summary'),
  json: new Option('--json', 'print report.json on stdout instead of the summary'),
};

// ---------------------------------------------------------------- capacity

/** Flags of `pushbench capacity`. */
export interface CapacityFlags {
  profile: string[];
  slo: string[];
  profiles?: string;
  start: number;
  factor: number;
  maxConnections: number;
  ratePerConnection: number;
  stepDuration: number;
  connectRate: number;
  refine: number;
  herd: boolean;
  tls?: boolean;
  herdSlo: string;
  devices?: number;
  workers?: number;
  out?: string;
  json?: boolean;
}

/** The flag table of `pushbench capacity`. */
export const capacityFlags: FlagTable<CapacityFlags> = {
  profile: repeated(
    '--profile <name>',
    'node profile (repeat to compare profiles side by side)',
  ).makeOptionMandatory(),
  slo: repeated(
    '--slo <gate>',
    'SLO every step must meet, e.g. "p99(push) < 50ms" (repeatable)',
  ).makeOptionMandatory(),
  profiles: new Option(
    '--profiles <file>',
    'JSON file of profiles (name -> {cpu, memory, capacity, price, ...})',
  ),
  start: whole('--start <n>', 'connections at the first step', 1000),
  factor: decimal('--factor <x>', 'connections grow by this per step', 2),
  maxConnections: whole(
    '--max-connections <n>',
    "never go past this many connections (the machine's own limits stop the search first)",
    1_000_000,
  ),
  ratePerConnection: decimal(
    '--rate-per-connection <hz>',
    'messages per second per connection at each step',
    0.5,
  ),
  stepDuration: duration('--step-duration <time>', 'publishing time per step', 8000),
  connectRate: decimal('--connect-rate <hz>', 'connect rate while filling a step', 2000),
  refine: whole('--refine <n>', 'bisection steps after the first failure', 2),
  herd: new Option('--no-herd', 'skip the connect (herd) absorption search'),
  tls: new Option(
    '--tls',
    "devices connect over TLS (the run's own certificate); measures the node's CPU per full and resumed handshake for plan",
  ),
  herdSlo: new Option('--herd-slo <gate>', 'SLO of the herd steps').default('p99(connect) < 1s'),
  devices: whole('--devices <n>', 'with several profiles: nodes and cost for this many devices'),
  workers: whole('--workers <n>', 'device worker threads'),
  out: new Option('--out <dir>', 'results folder (default results/capacity-<profile>-<time>)'),
  json: new Option('--json', 'print capacity.json on stdout instead of the summary'),
};

/**
 * The search `capacity` runs for one profile: into `--out` (a folder per
 * profile when there are several), else `results/capacity-<profile>-<time>`,
 * every profile's folder sharing the time `startedAt`.
 */
export function capacitySearch(
  flags: CapacityFlags,
  profile: CapacityOptions['profile'],
  startedAt: Date,
): CapacityOptions & { outDir: string } {
  const outDir = flags.out
    ? flags.profile.length > 1
      ? `${flags.out}/${profile.name}`
      : flags.out
    : defaultResultsDir(`capacity-${profile.name}`, startedAt);
  return {
    profile,
    slo: flags.slo,
    start: flags.start,
    factor: flags.factor,
    maxConnections: flags.maxConnections,
    ratePerConnection: flags.ratePerConnection,
    stepDurationMs: flags.stepDuration,
    connectRate: flags.connectRate,
    refine: flags.refine,
    herd: flags.herd,
    ...(flags.tls === true && { tls: true }),
    herdSlo: flags.herdSlo,
    ...(flags.workers !== undefined && { workers: flags.workers }),
    outDir,
  };
}

// ---------------------------------------------------------------- plan, model-check

/** Flags of `pushbench plan`. */
export interface PlanFlags {
  devices: number;
  from: string;
  headroom: number;
  balancer: BalancerAlgorithmName;
  reconnect: string;
  zone?: number;
  detect: number;
  attempt: number;
  absorption?: number;
  resumedShare?: number;
  json?: boolean;
}

/** The flag table of `pushbench plan`. */
export const planFlags: FlagTable<PlanFlags> = {
  devices: whole('--devices <n>', 'devices the fleet must hold').makeOptionMandatory(),
  from: new Option(
    '--from <capacity.json>',
    'capacity report of the node profile',
  ).makeOptionMandatory(),
  headroom: decimal('--headroom <x>', 'plan so the average node holds capacity / headroom', 2),
  balancer: oneOf(
    '--balancer <algorithm>',
    'balancer in front of the nodes',
    BALANCER_ALGORITHMS,
    'least-connections',
  ),
  reconnect: new Option('--reconnect <policy:base:cap>', 'device reconnect policy').default(
    'full-jitter:1s:60s',
  ),
  zone: whole('--zone <k>', 'also simulate a zone of k nodes dying'),
  detect: duration('--detect <time>', 'until health checks take a dead node out', 2000),
  attempt: duration(
    '--attempt <time>',
    "from a reconnect attempt's start to the balancer's choice; a refused one is seen as long again later (model-check reads it off a live run: half the median failed attempt)",
    0,
  ),
  absorption: decimal(
    '--absorption <hz>',
    "override the report's herd absorption (connects/s per node; from a --tls report, read as a full-handshake figure and scaled like the report's)",
  ),
  resumedShare: decimal(
    '--resumed-share <0-1>',
    'with a capacity report made with --tls: share of the herd that resumes its TLS session on the survivors (1: nodes share ticket keys; 0: each its own). Default 1',
  ),
  json: new Option('--json', 'print the plan as JSON'),
};

/**
 * The fleet `plan` sizes from `report`, the capacity report read from
 * `--from`. Throws `PB_USAGE` when neither the report nor `--absorption` gives
 * a herd absorption rate, or on a bad `--reconnect`.
 */
export function planInput(flags: PlanFlags, report: CapacityReport): PlanInput {
  const absorption = flags.absorption ?? report.herd.absorptionPerSec;
  if (absorption === null || absorption === undefined) {
    throw new PushbenchError(
      'PB_USAGE',
      `${flags.from} has no herd absorption rate (run capacity without --no-herd, or give --absorption)`,
    );
  }
  return {
    devices: flags.devices,
    capacity: {
      // A report without a knee fails here as before this module existed (an internal error).
      connectionsPerNode: report.knee!.connections,
      absorptionPerSec: absorption,
      price: report.price,
      profile: report.profile,
      ...(report.tls && {
        tls: {
          fullConnectUs: report.tls.fullConnectUs,
          resumedConnectUs: report.tls.resumedConnectUs,
        },
      }),
    },
    ...(flags.resumedShare !== undefined && { resumedShare: flags.resumedShare }),
    headroom: flags.headroom,
    balancer: flags.balancer,
    reconnect: parseReconnectSpec(flags.reconnect),
    ...(flags.zone !== undefined && { zoneNodes: flags.zone }),
    detectMs: flags.detect,
    attemptMs: flags.attempt,
  };
}

/** Flags of `pushbench model-check`. */
export interface ModelCheckFlags {
  nodes: number;
  devices?: number;
  reconnect: string;
  balancer: BalancerAlgorithmName;
  from?: string;
  tls?: boolean;
  connectRate?: number;
  workers?: number;
  out?: string;
  json?: boolean;
}

/** The flag table of `pushbench model-check`. */
export const modelCheckFlags: FlagTable<ModelCheckFlags> = {
  nodes: whole('--nodes <n>', 'nodes', 4),
  devices: whole(
    '--devices <n>',
    'devices (default 4,000; 2,000 with --tls, whose herd of 1,000 handshakes saturates a 2-core box)',
  ),
  reconnect: new Option('--reconnect <policy:base:cap>', 'device reconnect policy').default(
    'full-jitter:500ms:5s',
  ),
  balancer: oneOf(
    '--balancer <algorithm>',
    'balancer algorithm',
    BALANCER_ALGORITHMS,
    'least-connections',
  ),
  from: new Option(
    '--from <capacity.json>',
    "take the node's herd absorption rate from a capacity report",
  ),
  tls: new Option(
    '--tls',
    'devices over TLS to the nodes, sharing ticket keys (the herd resumes); with a --from report made with --tls the simulation pays the handshakes',
  ),
  connectRate: whole(
    '--connect-rate <n>',
    'connects/s of the live run before the kill (default 1,000; 400 with --tls, where 700-1,000 overloads this 2-core box and the nodes fail their health checks mid-ramp)',
  ),
  workers: whole('--workers <n>', 'device worker threads'),
  out: new Option('--out <dir>', 'write the live run and model-check.json here'),
  json: new Option('--json', 'print model-check.json on stdout'),
};

/** The live run and simulation `model-check` compares; `absorptionPerSec` comes from `--from`. */
export function modelCheckOptions(
  flags: ModelCheckFlags,
  absorptionPerSec: number | undefined,
): ModelCheckOptions {
  if (flags.connectRate !== undefined && flags.connectRate < 1) {
    throw new PushbenchError(
      'PB_USAGE',
      `--connect-rate must be at least 1 connect/s, got ${flags.connectRate}`,
    );
  }
  return {
    nodes: flags.nodes,
    ...(flags.devices !== undefined && { devices: flags.devices }),
    reconnect: flags.reconnect,
    balancer: flags.balancer,
    ...(absorptionPerSec !== undefined && { absorptionPerSec }),
    ...(flags.tls === true && { tls: true }),
    ...(flags.connectRate !== undefined && { connectRate: flags.connectRate }),
    ...(flags.workers !== undefined && { workers: flags.workers }),
    ...(flags.out !== undefined && { outDir: `${flags.out}/live` }),
  };
}

// ---------------------------------------------------------------- serve

/** The port `pushbench serve` binds by default (the library's default is 0, a free port). */
export const SERVE_PORT = 8080;

/** What a node does at capacity; the values of {@link NodeOptions.overload}. */
const OVERLOAD_MODES = [
  'refuse',
  'unhealthy',
  'crash',
] as const satisfies readonly NodeOptions['overload'][];

/** What a node does past a connection's send buffer bound; the values of {@link NodeOptions.slowConsumer}. */
const SLOW_CONSUMER_POLICIES = [
  'drop',
  'disconnect',
] as const satisfies readonly NodeOptions['slowConsumer'][];

/** Flags of `pushbench serve`. */
export interface ServeFlags {
  host: string;
  port: number;
  secret?: string;
  apiKey?: string;
  nodeId: string;
  heartbeatInterval: number;
  heartbeatTimeout: number | undefined;
  maxBody: number;
  processes: number;
  acceptors?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsTicketKeys?: string;
  tlsAndPlain?: boolean;
  /** false with `--no-peer-links`. */
  peerLinks: boolean;
  join?: string;
  redisPrefix?: string;
  registryRedis?: string;
  d2dCacheTtl: number;
  redis?: string;
  maxConnections?: number;
  seed?: number;
  overload: NodeOptions['overload'];
  admissionRate?: number;
  maxLifetime: number;
  lifetimeJitter: number;
  goawayGrace: number;
  headTimeout: number;
  maxPendingUpgrades: number;
  drainWindow: number;
  slowConsumer: NodeOptions['slowConsumer'];
  pushRate: number;
  d2dRate: number;
  d2dAllow?: string[];
  maxRooms: number;
  roomHistory: number;
}

/** The flag table of `pushbench serve`; node defaults come from `nodeDefaults`. */
export const serveFlags: FlagTable<ServeFlags> = {
  host: new Option('--host <host>', 'interface to bind').default(nodeDefaults.host),
  port: whole('--port <port>', 'port (0 picks a free one)', SERVE_PORT),
  secret: new Option('--secret <secret>', 'HMAC secret for device tokens').env('PUSHBENCH_SECRET'),
  apiKey: new Option('--api-key <key>', 'bearer key for the HTTP API').env('PUSHBENCH_API_KEY'),
  nodeId: new Option('--node-id <id>', 'name of this node').default(nodeDefaults.nodeId),
  heartbeatInterval: duration(
    '--heartbeat-interval <time>',
    'ping period',
    nodeDefaults.heartbeatIntervalMs,
  ),
  heartbeatTimeout: duration(
    '--heartbeat-timeout <time>',
    'close after this much silence, longer than the interval (default: 3 intervals, at least 30s)',
  ),
  maxBody: whole('--max-body <bytes>', 'largest push body', nodeDefaults.maxBodyBytes),
  processes: whole(
    '--processes <n>',
    "worker processes sharing the port (a node past one process's open-file limit)",
    1,
  ),
  tlsCert: new Option(
    '--tls-cert <file>',
    'serve devices and the API over TLS (wss://, https://) with this PEM certificate chain; needs --tls-key',
  ),
  tlsKey: new Option('--tls-key <file>', 'the PEM private key of --tls-cert'),
  tlsTicketKeys: new Option(
    '--tls-ticket-keys <file>',
    "48 bytes of session-ticket keys, shared by nodes that should resume each other's TLS sessions",
  ),
  tlsAndPlain: new Option(
    '--tls-and-plain',
    'with --tls-cert: plain TCP on the same port too, told apart by the first byte (devices over TLS, a harness calling the API in plain)',
  ),
  peerLinks: new Option(
    '--no-peer-links',
    "node-to-node requests (forwarded pushes, device-to-device, replacements) through the broker (Redis or the hub) instead of straight to the holding process's peer port",
  ),
  acceptors: whole(
    '--acceptors <n>',
    "how many of the node's processes accept new connections at once, the least loaded (default: all; fewer saves CPU per connect on a box with spare cores)",
  ),
  join: new Option(
    '--join <url>',
    'join a local cluster: http://host:port of a node started without --redis',
  ),
  redisPrefix: new Option(
    '--redis-prefix <prefix>',
    'prefix of every Redis key and channel (default pushbench:)',
  ),
  redis: new Option(
    '--redis <url>',
    'share registry, rooms and queue through Redis (a cluster)',
  ).env('PUSHBENCH_REDIS'),
  registryRedis: new Option(
    '--registry-redis <url>',
    "reach the registry's Redis at this URL instead of --redis (e.g. the same Redis through a link of its own)",
  ),
  d2dCacheTtl: duration(
    '--d2d-cache-ttl <time>',
    'how long a device-to-device target lookup is cached; 0 asks the registry every time',
    nodeDefaults.d2dCacheTtlMs,
  ),
  maxConnections: whole(
    '--max-connections <n>',
    'capacity: connections this node holds (see --overload)',
  ),
  seed: whole('--seed <n>', "seed of the node's own random choices (jitter), for replayable runs"),
  overload: oneOf(
    '--overload <mode>',
    'at capacity: refuse upgrades (503), turn unhealthy, or crash',
    OVERLOAD_MODES,
    nodeDefaults.overload,
  ),
  admissionRate: decimal(
    '--admission-rate <hz>',
    'admit at most this many upgrades per second (429 past it)',
  ),
  maxLifetime: duration(
    '--max-lifetime <time>',
    'goaway after this connection age (minus jitter)',
    nodeDefaults.maxLifetimeMs,
  ),
  lifetimeJitter: duration(
    '--lifetime-jitter <time>',
    'random shortening of each lifetime',
    nodeDefaults.lifetimeJitterMs,
  ),
  goawayGrace: duration(
    '--goaway-grace <time>',
    'forced close this long after a goaway',
    nodeDefaults.goawayGraceMs,
  ),
  headTimeout: duration(
    '--head-timeout <time>',
    'a new connection must send its whole request head within this, or gets 408',
    nodeDefaults.headTimeoutMs,
  ),
  maxPendingUpgrades: whole(
    '--max-pending-upgrades <n>',
    'connections per process still sending their request head; past it the oldest gets 503',
    nodeDefaults.maxPendingUpgrades,
  ),
  drainWindow: duration(
    '--drain-window <time>',
    'spread a drain (SIGTERM, POST /v1/admin/drain) over this',
    nodeDefaults.drainWindowMs,
  ),
  slowConsumer: oneOf(
    '--slow-consumer <policy>',
    'past the send buffer bound',
    SLOW_CONSUMER_POLICIES,
    nodeDefaults.slowConsumer,
  ),
  pushRate: decimal(
    '--push-rate <hz>',
    'direct pushes per second one device may receive (429 past it)',
    nodeDefaults.pushRatePerSec,
  ),
  d2dRate: decimal(
    '--d2d-rate <hz>',
    'device-to-device messages per second one device may send',
    nodeDefaults.d2dRatePerSec,
  ),
  d2dAllow: repeated('--d2d-allow <a=b,c>', 'let account a message accounts b and c (repeatable)'),
  maxRooms: whole(
    '--max-rooms <n>',
    'rooms one connection may join',
    nodeDefaults.maxRoomsPerConnection,
  ),
  roomHistory: whole(
    '--room-history <n>',
    'messages kept per room',
    nodeDefaults.roomHistoryLength,
  ),
};

/**
 * Turns `serve`'s flags into the node `serve` starts. Throws `PB_USAGE`,
 * naming the flag, on a missing secret or API key, a port outside 0-65535, a
 * rate <= 0, a bad `--d2d-allow`, `--processes` outside 1-256, or `--acceptors`
 * outside 1 to `--processes`.
 */
export function parseServeFlags(flags: ServeFlags): ServeOptions {
  const { secret, apiKey, port, processes } = flags;
  if (!secret) throw new PushbenchError('PB_USAGE', 'serve needs --secret (or PUSHBENCH_SECRET)');
  if (!apiKey) {
    throw new PushbenchError('PB_USAGE', 'serve needs --api-key (or PUSHBENCH_API_KEY)');
  }
  if (port < 0 || port > 65535) {
    throw new PushbenchError('PB_USAGE', `--port must be 0-65535, got ${port}`);
  }
  const rates = [
    ['--push-rate', flags.pushRate],
    ['--d2d-rate', flags.d2dRate],
    ['--admission-rate', flags.admissionRate],
  ] as const;
  for (const [flag, rate] of rates) {
    if (rate !== undefined && rate <= 0) {
      throw new PushbenchError('PB_USAGE', `${flag} must be > 0, got ${rate}`);
    }
  }
  const d2dAllow = flags.d2dAllow ?? [];
  try {
    parseD2dAllow(d2dAllow);
  } catch (err) {
    throw new PushbenchError('PB_USAGE', (err as Error).message);
  }
  if (processes < 1 || processes > 256) {
    throw new PushbenchError('PB_USAGE', `--processes must be 1-256, got ${processes}`);
  }
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new PushbenchError('PB_USAGE', '--tls-cert and --tls-key go together');
  }
  for (const [flag, set] of [
    ['--tls-ticket-keys', flags.tlsTicketKeys !== undefined],
    ['--tls-and-plain', flags.tlsAndPlain === true],
  ] as const) {
    if (set && flags.tlsCert === undefined) {
      throw new PushbenchError('PB_USAGE', `${flag} needs --tls-cert and --tls-key`);
    }
  }
  const tls =
    flags.tlsCert !== undefined && flags.tlsKey !== undefined
      ? {
          certFile: flags.tlsCert,
          keyFile: flags.tlsKey,
          ...(flags.tlsTicketKeys !== undefined && { ticketKeysFile: flags.tlsTicketKeys }),
          ...(flags.tlsAndPlain === true && { plainToo: true }),
        }
      : undefined;
  // Read and checked here, so a bad file is one line before any process starts.
  if (tls !== undefined) readNodeTls(tls);
  const heartbeatTimeoutMs =
    flags.heartbeatTimeout ?? defaultHeartbeatTimeoutMs(flags.heartbeatInterval);
  const heartbeatProblem = heartbeatTimeoutProblem(flags.heartbeatInterval, heartbeatTimeoutMs);
  if (heartbeatProblem)
    throw new PushbenchError('PB_USAGE', `--heartbeat-timeout ${heartbeatProblem}`);
  const acceptors = flags.acceptors;
  if (acceptors !== undefined && (acceptors < 1 || acceptors > processes)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--acceptors must be 1-${processes} (--processes), got ${acceptors}`,
    );
  }
  return {
    processes,
    ...(acceptors !== undefined && { acceptors }),
    node: {
      host: flags.host,
      port,
      ...(tls !== undefined && { tls }),
      secret,
      apiKey,
      nodeId: flags.nodeId,
      heartbeatIntervalMs: flags.heartbeatInterval,
      heartbeatTimeoutMs,
      maxBodyBytes: flags.maxBody,
      redisUrl: flags.redis,
      join: flags.join,
      redisPrefix: flags.redisPrefix,
      registryRedisUrl: flags.registryRedis,
      d2dCacheTtlMs: flags.d2dCacheTtl,
      ...(flags.maxConnections !== undefined && { maxConnections: flags.maxConnections }),
      overload: flags.overload,
      seed: flags.seed ?? null,
      ...(flags.admissionRate !== undefined && { admissionRatePerSec: flags.admissionRate }),
      maxLifetimeMs: flags.maxLifetime,
      lifetimeJitterMs: flags.lifetimeJitter,
      goawayGraceMs: flags.goawayGrace,
      headTimeoutMs: flags.headTimeout,
      maxPendingUpgrades: flags.maxPendingUpgrades,
      drainWindowMs: flags.drainWindow,
      slowConsumer: flags.slowConsumer,
      pushRatePerSec: flags.pushRate,
      d2dRatePerSec: flags.d2dRate,
      d2dAllow,
      maxRoomsPerConnection: flags.maxRooms,
      roomHistoryLength: flags.roomHistory,
      ...(flags.peerLinks === false && { peerLinks: false }),
    },
  };
}

// ---------------------------------------------------------------- token

// ---------------------------------------------------------------- agent

/** Flags of `pushbench agent`. */
export interface AgentFlags {
  join: string;
  token: string;
  name?: string;
  maxDevices?: number;
  sourceAddresses?: string;
  ca?: string;
}

/** The flag table of `pushbench agent`. */
export const agentFlags: FlagTable<AgentFlags> = {
  join: new Option(
    '--join <url>',
    "the run's join URL, ws://HOST:PORT (printed by run --agents)",
  ).makeOptionMandatory(),
  token: new Option('--token <token>', "the run's agent token")
    .env('PUSHBENCH_AGENT_TOKEN')
    .makeOptionMandatory(),
  name: new Option('--name <name>', 'how the run names this agent (default: the host name)'),
  maxDevices: whole('--max-devices <n>', 'never hold more devices than this'),
  ca: new Option('--ca <file>', 'with a wss:// join URL: trust this CA certificate (PEM)'),
  sourceAddresses: new Option(
    '--source-addresses <a,b,...>',
    "this host's IPv4 addresses for devices to bind, round-robin (each adds ~28k ports toward one destination; bind slows past ~2,000 devices per address, so give about one per 2,048)",
  ),
};

/** `pushbench agent`'s flags, checked; throws `PB_USAGE` with the flag's value. */
export function parseAgentFlags(flags: AgentFlags): AgentFlags {
  let url: URL;
  try {
    url = new URL(flags.join);
  } catch {
    throw new PushbenchError(
      'PB_USAGE',
      `--join must be a ws:// or wss:// URL, got "${flags.join}"`,
    );
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new PushbenchError(
      'PB_USAGE',
      `--join must be a ws:// or wss:// URL, got "${flags.join}"`,
    );
  }
  for (const a of flags.sourceAddresses?.split(',') ?? []) {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(a)) {
      throw new PushbenchError(
        'PB_USAGE',
        `--source-addresses takes IPv4 addresses, comma-separated; got "${a}"`,
      );
    }
  }
  if (flags.name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(flags.name)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--name must be 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit; got "${flags.name}"`,
    );
  }
  return flags;
}

/** Flags of `pushbench k8s agents`: the manifest's settings, one flag each. */
export type K8sAgentsFlags = K8sAgentsOptions;

/** The flag table of `pushbench k8s agents`. */
export const k8sAgentsFlags: FlagTable<K8sAgentsFlags> = {
  agents: whole('--agents <n>', 'load agents to place').makeOptionMandatory(),
  coordinator: new Option(
    '--coordinator <url>',
    "the run's join URL, ws://HOST:PORT (as run --agents prints it)",
  ).makeOptionMandatory(),
  image: new Option('--image <image>', 'a container image with pushbench on its PATH').default(
    `pushbench:${version}`,
  ),
  name: new Option('--name <name>', 'name of the Job and its Service').default('pushbench-agents'),
  namespace: new Option('--namespace <ns>', 'namespace of both objects'),
  tokenSecret: new Option(
    '--token-secret <name>',
    "Secret with the run's agent token under key `token`",
  ).default('pushbench-agent-token'),
  maxDevices: whole('--max-devices <n>', 'per agent: never hold more devices than this'),
  cpu: new Option('--cpu <quantity>', 'per agent: CPU request').default('2'),
  memory: new Option('--memory <quantity>', 'per agent: memory request and limit').default('4Gi'),
};

const K8S_NAME = /^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$/;

/** `pushbench k8s agents`' flags, checked; throws `PB_USAGE` naming the flag. */
export function parseK8sAgentsFlags(flags: K8sAgentsFlags): K8sAgentsFlags {
  if (flags.agents < 1 || flags.agents > 100_000) {
    throw new PushbenchError('PB_USAGE', `--agents must be 1-100000, got ${flags.agents}`);
  }
  parseAgentFlags({ join: flags.coordinator, token: 'x' });
  for (const [flag, v] of [
    ['--name', flags.name],
    ['--token-secret', flags.tokenSecret],
    ['--namespace', flags.namespace],
  ] as const) {
    if (v !== undefined && !K8S_NAME.test(v)) {
      throw new PushbenchError(
        'PB_USAGE',
        `${flag} "${v}" is not a Kubernetes name: 1-52 of a-z 0-9 -, starting and ending with a letter or digit`,
      );
    }
  }
  if (!/^[0-9]+(\.[0-9]+)?m?$/.test(flags.cpu)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--cpu must be a CPU quantity like 2 or 500m, got "${flags.cpu}"`,
    );
  }
  if (!/^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$/.test(flags.memory)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--memory must be a quantity like 4Gi, got "${flags.memory}"`,
    );
  }
  return flags;
}

/** Flags of `pushbench token`. */
export interface TokenFlags {
  secret: string;
  device: string;
  account: string;
  ttl: number;
}

/** The flag table of `pushbench token`. */
export const tokenFlags: FlagTable<TokenFlags> = {
  secret: new Option('--secret <secret>', "HMAC secret (same as the node's)")
    .env('PUSHBENCH_SECRET')
    .makeOptionMandatory(),
  device: new Option('--device <id>', 'device id').makeOptionMandatory(),
  account: new Option('--account <id>', 'account id').makeOptionMandatory(),
  ttl: duration('--ttl <time>', 'validity', 3_600_000),
};

/**
 * The claims of the token `token` signs, valid for `--ttl` from `nowMs`.
 * Throws `PB_USAGE` on an invalid device or account id, or a ttl <= 0.
 */
export function tokenClaims(flags: TokenFlags, nowMs: number): DeviceClaims {
  for (const [flag, id] of [
    ['--device', flags.device],
    ['--account', flags.account],
  ] as const) {
    if (!isValidId(id)) {
      throw new PushbenchError(
        'PB_USAGE',
        `${flag} "${id}" is not a valid id: use 1-128 of A-Z a-z 0-9 . _ : @ -`,
      );
    }
  }
  if (flags.ttl <= 0) throw new PushbenchError('PB_USAGE', '--ttl must be positive');
  return {
    deviceId: flags.device,
    accountId: flags.account,
    expiresAtSec: Math.floor(nowMs / 1000 + flags.ttl / 1000),
  };
}
