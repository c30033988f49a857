import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PushbenchError } from '../core/errors.js';
import { machineFacts, processLimits } from '../core/machine.js';
import { encodeHistogram } from '../core/measure/histogram.js';
import { GENERATOR_AHEAD, mayRaisePriority } from '../core/priority.js';
import { type ProcessStats, readProcessTreeStats, sumProcessStats } from '../core/process-stats.js';
import type { LoadResult, RunMarker } from '../core/result.js';
import { version } from '../core/version.js';
import { Coordinator } from '../loadgen/coordinator.js';
import { AgentListener, type AgentRecord } from '../loadgen/join/listener.js';
import { type AgentPlacement, placeOverAgents } from '../loadgen/join/placement.js';
import { launchOverSsh, type SshAgents, type SshTarget } from '../loadgen/join/ssh.js';
import { withLiveRoutes } from '../loadgen/placement.js';
import { checkGateTargets, parseGates } from '../reports/gates.js';
import { type OutputRequest, writeOutputs } from '../reports/outputs/index.js';
import type { RunListener } from '../reports/outputs/progress.js';
import { defaultResultsDir } from '../reports/outputs/results-dir.js';
import {
  buildReport,
  type Report,
  type ServerCounts,
  type TopologyReport,
} from '../reports/report.js';
import { loadScenario, type ScenarioOverrides } from '../scenarios/load.js';
import type { ScenarioInput } from '../scenarios/schema.js';
import { ChaosDirector, type FaultRecord } from '../topology/chaos.js';
import { Cluster, plannedRoutes } from '../topology/cluster.js';
import { chooseNetworkEngine } from '../topology/kernel/engine.js';
import { sweepIfPossible } from '../topology/kernel/fabric.js';
import type { NetworkSample } from '../topology/network/types.js';
import {
  checkRun,
  describePreflight,
  machineLimits,
  onEngine,
  preflightWarnings,
  refuseIfCapped,
} from './preflight.js';

/** Options of {@link run}; every scenario override is optional. */
export interface RunOptions extends ScenarioOverrides, OutputRequest {
  /** Results folder. Default `results/<scenario>-<timestamp>`. */
  outDir?: string;
  /** Write the results folder (report.json, report.html, logs). Default true. */
  write?: boolean;
  /** Progress and notices. */
  listener?: RunListener;
  /** Run every device on load agents on other hosts (`--agents`). */
  agents?: AgentsOption;
}

/** `--agents N --listen HOST:PORT --agent-token T --agents-timeout D`. */
export interface AgentsOption {
  count: number;
  /** Where agents join; the devices' endpoints listen on the same host. */
  host: string;
  port: number;
  token: string;
  /** How long to wait for every agent. */
  timeoutMs: number;
  /** Start agents on these hosts over ssh (`--ssh`), running `command` there. */
  ssh?: { targets: SshTarget[]; command: string; options: string[] };
  /** Serve the join channel as `wss://` with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** Go on when agents holding at most this share of the devices are lost (0-1). */
  tolerateShare?: number;
}

/** A PEM file for the join channel's TLS, or `PB_USAGE` naming it. */
function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new PushbenchError('PB_USAGE', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/**
 * Listens for `--agents`, waits until every one has joined and measured its
 * clock, and places the fleet over them. Refuses what agents cannot reach.
 */
async function gatherAgents(
  scenario: Awaited<ReturnType<typeof loadScenario>>,
  option: AgentsOption,
  engine: 'userland' | 'kernel',
  listener: RunListener,
): Promise<{
  agents: AgentListener;
  placed: AgentPlacement;
  records: AgentRecord[];
  ssh: SshAgents | undefined;
}> {
  if (engine === 'kernel') {
    throw new PushbenchError(
      'PB_USAGE',
      "load agents on other hosts cannot reach the kernel engine's hosts (a private bridge on this machine): use --set topology.network=userland with --agents",
    );
  }
  if (scenario.topology.balanced && scenario.topology.regions.length > 1) {
    throw new PushbenchError(
      'PB_USAGE',
      "one region with --agents: the global entry tells a device's home region by its source address on this host, which devices on other hosts do not have",
    );
  }
  if (option.host === '0.0.0.0' || option.host === '::') {
    throw new PushbenchError(
      'PB_USAGE',
      `--listen ${option.host}:${option.port}: give the address agents reach this machine at (the devices connect to it too), not a wildcard`,
    );
  }
  const agents = await AgentListener.listen({
    host: option.host,
    port: option.port,
    token: option.token,
    expect: option.count,
    notice: (line) => listener.notice?.(line),
    ...(option.tolerateShare !== undefined && { tolerateShare: option.tolerateShare }),
    ...(option.tls && {
      tls: {
        cert: readPem('--agent-tls-cert', option.tls.certFile),
        key: readPem('--agent-tls-key', option.tls.keyFile),
      },
    }),
  });
  let ssh: SshAgents | undefined;
  try {
    const byHand = option.count - (option.ssh?.targets.length ?? 0);
    listener.notice?.(
      `waiting ${Math.round(option.timeoutMs / 1000)} s for ${option.count} load agent${option.count === 1 ? '' : 's'}${
        byHand > 0
          ? `; on each load host run: pushbench agent --join ${agents.url} --token ${option.token}`
          : ''
      }`,
    );
    if (option.ssh) {
      ssh = await launchOverSsh(option.ssh.targets, {
        url: agents.url,
        token: option.token,
        command: option.ssh.command,
        options: option.ssh.options,
        version,
        log: (line) => listener.notice?.(line),
      });
    }
    const records = await (ssh
      ? Promise.race([agents.waitForAgents(option.timeoutMs), ssh.failed])
      : agents.waitForAgents(option.timeoutMs));
    const { count, reserve } = scenario.devices;
    const placed = placeOverAgents(
      {
        devices: count,
        reserve,
        threads: scenario.workers,
        routes: plannedRoutes(scenario),
      },
      records.map((r) => ({ name: r.name, facts: r.facts })),
      processLimits().heapBytes,
    );
    for (const r of records) {
      const c = r.clock!;
      listener.notice?.(
        `agent ${r.name}: clock offset ${(c.offsetUs / 1000).toFixed(3)} ms ± ${(c.uncertaintyUs / 1000).toFixed(3)} ms (best round trip ${(c.roundTripUs / 1000).toFixed(3)} ms of ${c.samples})`,
      );
    }
    return { agents, placed, records, ssh };
  } catch (err) {
    await agents.close();
    await ssh?.stop();
    throw err;
  }
}

/** A finished run: the report and where it was written. */
export interface RunResult {
  report: Report;
  /** Path of report.json, when written. */
  reportPath: string | undefined;
  /** Every file written. */
  files: string[];
}

/**
 * One second of the balancers' view, keyed by node. `t` and `wallMs` are the
 * run's time and the wall clock read together once the sample is in: the
 * sample (taken at `net.atMs`) and each health change are placed on the run's
 * axis by their wall-clock distance from that moment, so the time the sample
 * spent waiting for the nodes' own counts does not move them later.
 */
export function balancerPoint(
  t: number,
  wallMs: number,
  net: NetworkSample,
): TopologyReport['balancer'][number] {
  const backends: TopologyReport['balancer'][number]['backends'] = {};
  for (const b of net.backends) {
    backends[b.nodeId] = {
      connections: b.connections,
      healthy: b.healthy,
      inRotation: b.inRotation,
      conntrackHeld: b.conntrackHeld,
      // When its health last changed, on the run's time axis.
      ...(b.healthChangedAtMs !== null && {
        healthChangedAtS: Math.round((t - (wallMs - b.healthChangedAtMs) / 1000) * 100) / 100,
      }),
      ...(b.checksStarved > 0 && { checksStarved: b.checksStarved }),
      ...(b.retries !== undefined && b.retries > 0 && { retries: b.retries }),
      ...(b.redispatches !== undefined && b.redispatches > 0 && { redispatches: b.redispatches }),
      ...(b.queueAbandoned !== undefined &&
        b.queueAbandoned > 0 && { queueAbandoned: b.queueAbandoned }),
      ...(b.queueTimedOut !== undefined &&
        b.queueTimedOut > 0 && { queueTimedOut: b.queueTimedOut }),
    };
  }
  return {
    t: Math.round((t - (wallMs - net.atMs) / 1000) * 10) / 10,
    backends,
    ...(net.global && { routed: net.global.routed, regionsHealthy: net.global.healthy }),
  };
}

/**
 * The warning for health checks the balancers left unjudged because the node
 * starved for a CPU on this shared machine (health.ts), from the last sample
 * that names each backend; undefined when there were none.
 */
export function starvedChecksWarning(samples: TopologyReport['balancer']): string | undefined {
  const byNode = new Map<string, number>();
  for (const s of samples)
    for (const [nodeId, b] of Object.entries(s.backends))
      if (b.checksStarved !== undefined) byNode.set(nodeId, b.checksStarved);
  if (byNode.size === 0) return undefined;
  const total = [...byNode.values()].reduce((a, b) => a + b, 0);
  const worst = [...byNode]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([id, n]) => `${id} ${n}`)
    .join(', ');
  return `${total} health check${total === 1 ? '' : 's'} of live nodes (${worst}${byNode.size > 5 ? ', …' : ''}) timed out while the node waited for a CPU for most of the check: this machine gave its cores to the rest of the run, so they counted neither for nor against the node (a node on its own cores would have answered)`;
}

/** Actions that meet the devices connected when they fire, so their share and herd depend on it. */
const FLEET_FAULTS: ReadonlySet<FaultRecord['action']> = new Set([
  'kill-node',
  'stop-node',
  'scale-down',
  'blackhole',
  'reset',
  'latency',
  'partition',
  'bandwidth',
]);

/**
 * Faults that fired while the initial ramp was still opening devices (before
 * publishing began, from the run's phase markers): they met part of the
 * fleet, so their share and herd count only the devices up by then. A
 * built-in's faults count from the ramp (`after: "ramp"`); a scenario whose
 * `at` counts from the start does this when `--devices` lengthens the ramp.
 */
export function midRampWarning(
  faults: readonly FaultRecord[],
  markers: readonly RunMarker[],
): string | undefined {
  const publishing = markers.find((m) => m.kind === 'phase' && m.label === 'publishing');
  if (!publishing) return undefined;
  const early = faults.filter((f) => f.fired && FLEET_FAULTS.has(f.action) && f.t < publishing.t);
  if (early.length === 0) return undefined;
  const which = early.map((f) => `${f.label} at ${f.t}s`).join(', ');
  return `${which} fired before the initial ramp resolved (publishing began at ${publishing.t}s): ${early.length === 1 ? 'it' : 'they'} met a fleet still connecting, so shares and herds count only the devices up by then; "after": "ramp" counts an action from the ramp's end`;
}

/**
 * Why this machine could not carry the scenario (the preflight's refusal, as
 * `run` would throw it), or undefined when it fits. Starts nothing.
 */
export async function preflightRefusal(
  ref: string | ScenarioInput,
  options: ScenarioOverrides = {},
): Promise<string | undefined> {
  const loaded = await loadScenario(ref, options);
  try {
    const engine = chooseNetworkEngine(loaded).engine;
    const scenario = onEngine(loaded, engine);
    const checked = checkRun(
      scenario,
      plannedRoutes(scenario),
      machineLimits(processLimits()),
      engine,
    );
    refuseIfCapped(scenario, checked);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Runs a scenario end to end: validates it and its gates, starts the cluster
 * (node processes, and the network fabric when there are balancers or faults),
 * drives the device fleet and publishers while the chaos director plays the
 * timeline, stops everything, and returns the report (also written as
 * report.json). Never sets the process exit code: the report carries
 * `exitCode` for the caller to use.
 */
export async function run(
  ref: string | ScenarioInput,
  options: RunOptions = {},
): Promise<RunResult> {
  const loaded = await loadScenario(ref, options);
  const gates = parseGates(loaded.gates);
  checkGateTargets(gates, {
    labels: loaded.timeline.map((t) => t.label),
    regions: loaded.topology.regions.map((r) => r.name),
  });
  const listener = options.listener ?? {};
  const limits = machineLimits(processLimits());
  // Which network carries the devices' bytes: asked, or `auto` resolved here (exit 2 if impossible).
  const engine = chooseNetworkEngine(loaded);
  const scenario = onEngine(loaded, engine.engine);
  // What a SIGKILLed run left (namespaces, and the nodes and HAProxy still in them) goes first.
  const swept = await sweepIfPossible();
  if (swept.length > 0) {
    listener.notice?.(
      `removed what dead runs left: ${swept.join(', ')} (namespaces and their processes)`,
    );
  }
  const gathered =
    options.agents === undefined
      ? undefined
      : await gatherAgents(scenario, options.agents, engine.engine, listener);
  const checked = checkRun(
    scenario,
    plannedRoutes(scenario),
    limits,
    engine.engine,
    gathered?.placed.placement,
  );
  try {
    refuseIfCapped(scenario, checked);
  } catch (err) {
    await gathered?.agents.close();
    await gathered?.ssh?.stop();
    throw err;
  }
  listener.notice?.(describePreflight(scenario, checked));
  const cpuWarnings = preflightWarnings(checked, 'cores');
  const nodeWarnings = preflightWarnings(checked, 'nodes');
  const waveWarnings = preflightWarnings(checked, 'seconds');
  for (const w of [...cpuWarnings, ...nodeWarnings, ...waveWarnings]) listener.notice?.(w);
  const startedAt = new Date();
  const t0 = performance.now();
  const secrets = {
    secret: randomBytes(24).toString('base64url'),
    apiKey: randomBytes(24).toString('base64url'),
  };

  let director: ChaosDirector | undefined;
  if (scenario.topology.network !== 'userland' || engine.engine === 'kernel') {
    listener.notice?.(`network: ${engine.engine} (${engine.why})`);
  }
  const tls = scenario.topology.tls;
  if (tls) {
    listener.notice?.(
      `tls: ended at the ${tls.at === 'node' ? 'nodes' : "regions' HAProxy"}, ${tls.certificate ? `certificate ${tls.certificate.certFile} for ${tls.certificate.servername}` : `${tls.key} certificate from a CA made for this run`}, ticket keys ${tls.tickets}, devices ${scenario.devices.tlsResume ? 'resume' : 'do not resume'}`,
    );
  }
  let cluster: Cluster;
  try {
    cluster = await Cluster.start(
      scenario,
      secrets,
      {
        unexpectedExit: (node, exit) => {
          const how = exit.signal ?? `code ${exit.exitCode}`;
          listener.notice?.(`${node.nodeId} exited on its own (${how}) ${exit.lastError}`.trim());
          director?.noteCrash(node.nodeId, exit.lastError);
        },
      },
      engine,
      options.agents?.host,
    );
  } catch (err) {
    await gathered?.agents.close();
    await gathered?.ssh?.stop();
    throw err;
  }
  for (const note of cluster.limitNotes()) listener.notice?.(note);
  const nodes = cluster.describe();
  listener.notice?.(
    `${nodes.length} node${nodes.length === 1 ? '' : 's'} up (${nodes.map((n) => `${n.nodeId} pid ${n.pid}`).join(', ')})${nodes.length > 0 && scenario.topology.nodeNice > 0 ? `, nice +${scenario.topology.nodeNice}, behind the load generator (topology.nodeNice)${mayRaisePriority() ? `, whose threads run ${GENERATOR_AHEAD} ahead (nice ${Math.max(-20, getPriority() - GENERATOR_AHEAD)})` : ''}` : ''}`,
  );
  const clientHosts = cluster.clientHostsByRegion();
  if (clientHosts.size > 0) {
    const processes = checked.placement.clientHosts ?? [];
    listener.notice?.(
      `clients: ${[...clientHosts]
        .map(([region, h]) => {
          const n = processes.filter((r) => r === region).length;
          return `${region} on host ${h.namespace} (${h.address}), ${n} load agent${n === 1 ? '' : 's'}`;
        })
        .join('; ')}`,
    );
  }
  const server: ServerCounts[] = [];
  const atPublish = new Map<number, { stats: ProcessStats; atMs: number }>();
  let hubProcess: Report['topology']['hubProcess'];
  /** A process tree's stats now, with its CPU since publishing began when that was read. */
  const sincePublish = (pid: number, atEnd: number) => {
    const now = readProcessTreeStats(pid);
    if (!now) return undefined;
    const before = atPublish.get(pid);
    return {
      ...now,
      ...(before && {
        publishCpuSeconds: Math.round((now.cpuSeconds - before.stats.cpuSeconds) * 100) / 100,
        publishSeconds: Math.round(atEnd - before.atMs) / 1000,
      }),
    };
  };
  const balancer: TopologyReport['balancer'] = [];
  let load: LoadResult;
  let loadResources: LoadResult['generator']['resources'];
  let faults: FaultRecord[] = [];
  try {
    const live = cluster.deviceRoutes(scenario.devices.regions);
    // Devices on other hosts bind no address of this one: their own kernel picks.
    const routes = gathered ? live.map((r) => ({ ...r, localAddresses: [] })) : live;
    const coordinator = new Coordinator({
      scenario,
      routes,
      // What preflight checked is what runs, pointed at the cluster that now exists.
      placement: withLiveRoutes(checked.placement, routes),
      clientNamespaces: new Map(
        [...cluster.clientHostsByRegion()].map(([region, h]) => [region, h.namespace]),
      ),
      ...(gathered && {
        agents: { listener: gathered.agents, processesOf: gathered.placed.processesOf },
      }),
      httpUrls: cluster.apiUrls(),
      secret: secrets.secret,
      apiKey: secrets.apiKey,
      beforeClose: async () => {
        const atEnd = Date.now();
        loadResources = sumProcessStats(coordinator.loadPids());
        const metrics = await cluster.nodeMetrics();
        for (const m of metrics) {
          const node = cluster.describe().find((n) => n.nodeId === m.nodeId);
          const process = node ? sincePublish(node.pid, atEnd) : undefined;
          if (process) m.process = process;
        }
        const hubPid = cluster.infrastructure().hubPid;
        if (hubPid !== undefined) hubProcess = sincePublish(hubPid, atEnd);
        server.push(...metrics);
      },
      sampleNodes: async () => {
        const [counts, net] = await Promise.all([
          cluster.sampleNodes(),
          cluster.sampleNetwork().catch(() => undefined),
        ]);
        if (net) balancer.push(balancerPoint(coordinator.elapsedS(), Date.now(), net));
        return counts;
      },
    });
    director = new ChaosDirector(scenario.timeline, cluster, coordinator, (record) => {
      listener.notice?.(`t=${record.t}s ${record.label}`);
    });
    const chaos = director;
    coordinator.on('started', (startUs) => chaos.start(startUs));
    coordinator.on('publishing', (atUs) => chaos.rampResolved(atUs));
    // Each node's CPU time when publishing starts, so the report can say what the load cost.
    coordinator.on('phase', (phase) => {
      if (phase !== 'publishing') return;
      for (const n of cluster.describe()) {
        const stats = n.state === 'up' ? readProcessTreeStats(n.pid) : undefined;
        if (stats) atPublish.set(n.pid, { stats, atMs: Date.now() });
      }
      const hubPid = cluster.infrastructure().hubPid;
      const hub = hubPid !== undefined ? readProcessTreeStats(hubPid) : undefined;
      if (hubPid !== undefined && hub) atPublish.set(hubPid, { stats: hub, atMs: Date.now() });
    });
    if (listener.phase) coordinator.on('phase', (p) => listener.phase?.(p));
    if (listener.interval) coordinator.on('interval', (p) => listener.interval?.(p));
    load = await coordinator.run();
    if (loadResources) load.generator.resources = loadResources;
    // Agents lost within --agents-tolerate: the result stands, and says so.
    for (const a of gathered?.agents.records() ?? []) {
      if (a.lost !== null) {
        load.generator.warnings.push(
          `load agent ${a.name} (${a.address}, ${a.devices} devices) was lost mid-run: ${a.lost}; its devices are counted as held by nobody at the end, and messages to them as lost`,
        );
      }
    }
    const starved = starvedChecksWarning(balancer);
    if (starved) load.generator.warnings.push(starved);
    // What the preflight foresaw stands beside the generator's own verdict.
    if (load.generator.valid) load.generator.warnings.push(...cpuWarnings);
    else load.generator.reasons.push(...cpuWarnings);
    // A wave cut short is the scenario's timing, and a node over its quota what the run
    // measures: neither is the generator's saturation.
    load.generator.warnings.push(...nodeWarnings, ...waveWarnings);
    faults = chaos.stop();
    const midRamp = midRampWarning(faults, load.markers);
    if (midRamp) load.generator.warnings.push(midRamp);
  } finally {
    director?.stop();
    await gathered?.agents.close();
    await gathered?.ssh?.stop();
    await cluster.stop();
  }

  const report = buildReport(load, {
    scenario,
    gates,
    startedAt,
    wallTimeMs: performance.now() - t0,
    version,
    machine: machineFacts(),
    server,
    faults,
    lostAtS: load.lostAtS,
    ...(gathered && {
      agents: gathered.agents.records().map((a) => {
        const own = load.groupHistograms?.[a.name];
        const mine = new Set(gathered.agents.shardsOf(a.name).map((i) => `devices-${i}`));
        const shards = load.generator.workers.filter((w) => mine.has(w.worker));
        return {
          ...a,
          ...(shards.length > 0 && {
            health: {
              shards: shards.length,
              lagP99Ms: Math.max(...shards.map((w) => w.lagP99Ms)),
              lagMaxMs: Math.max(...shards.map((w) => w.lagMaxMs)),
              elu: Math.max(...shards.map((w) => w.elu)),
              processCpu: shards.some((w) => w.processCpu !== undefined)
                ? Math.max(...shards.map((w) => w.processCpu ?? 0))
                : null,
            },
          }),
          ...(own !== undefined && {
            histograms: Object.fromEntries(
              Object.entries(own).map(([series, h]) => [series, encodeHistogram(h)]),
            ),
          }),
        };
      }),
    }),
    topology: {
      nodes: cluster.describe(),
      ...cluster.infrastructure(),
      ...(hubProcess && { hubProcess }),
      network: cluster.engine,
      balancer,
    },
  });
  let reportPath: string | undefined;
  let files: string[] = [];
  if (options.write !== false) {
    const dir = resolve(options.outDir ?? defaultResultsDir(scenario.name, startedAt));
    files = await writeOutputs(report, dir, options, { intervals: load.intervals });
    reportPath = join(dir, 'report.json');
  }
  return { report, reportPath, files };
}
