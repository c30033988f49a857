import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PushbenchError } from '../core/errors.js';
import { machineFacts, openFilesLimit } from '../core/machine.js';
import { version } from '../core/version.js';
import { Coordinator } from '../loadgen/coordinator.js';
import { parseGates } from '../reports/gates.js';
import { type OutputRequest, writeOutputs } from '../reports/outputs/index.js';
import type { RunListener } from '../reports/outputs/progress.js';
import { buildReport, type Report, type ServerCounts } from '../reports/report.js';
import { loadScenario, type ScenarioOverrides } from '../scenarios/load.js';
import type { Scenario, ScenarioInput } from '../scenarios/schema.js';
import { type NodeProcess, startNodeProcess } from '../topology/supervisor.js';

/** Options of {@link run}; every scenario override is optional. */
export interface RunOptions extends ScenarioOverrides, OutputRequest {
  /** Results folder. Default `results/<scenario>-<timestamp>`. */
  outDir?: string;
  /** Write the results folder (report.json, report.html, logs). Default true. */
  write?: boolean;
  /** Progress and notices. */
  listener?: RunListener;
}

/** A finished run: the report and where it was written. */
export interface RunResult {
  report: Report;
  /** Path of report.json, when written. */
  reportPath: string | undefined;
  /** Every file written. */
  files: string[];
}

/** File descriptors a process needs beyond its sockets (stdio, epoll, pipes, libs). */
const FD_OVERHEAD = 200;

/**
 * Checks, before anything starts, that one process can hold the fleet's
 * sockets. Until multi-process placement lands, devices share one process and
 * the node another, so each needs `devices + overhead` descriptors.
 */
export function preflight(scenario: Scenario, limit: number | null = openFilesLimit()): void {
  if (limit === null) return;
  const needed = scenario.devices.count + FD_OVERHEAD;
  if (needed > limit) {
    throw new PushbenchError(
      'PB_LIMIT',
      `${scenario.devices.count} devices need about ${needed} open files in one process but the limit ` +
        `(RLIMIT_NOFILE) is ${limit}; raise it with \`ulimit -n ${needed}\`, or run at most ` +
        `${limit - FD_OVERHEAD} devices (spreading a fleet over processes is not built yet)`,
    );
  }
}

function timestamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

async function fetchServerCounts(node: NodeProcess): Promise<ServerCounts> {
  try {
    const res = await fetch(`${node.httpUrl}/metrics.json`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as ServerCounts;
  } catch (err) {
    return { nodeId: node.nodeId, error: `metrics unavailable: ${(err as Error).message}` };
  }
}

/**
 * Runs a scenario end to end: validates it and its gates, starts the reference
 * node as a separate process, drives the device fleet and publisher, stops the
 * node, and returns the report (also written as report.json). Never sets the
 * process exit code: the report carries `exitCode` for the caller to use.
 */
export async function run(
  ref: string | ScenarioInput,
  options: RunOptions = {},
): Promise<RunResult> {
  const scenario = await loadScenario(ref, options);
  const gates = parseGates(scenario.gates);
  preflight(scenario);
  const listener = options.listener ?? {};
  const startedAt = new Date();
  const t0 = performance.now();
  const secret = randomBytes(24).toString('base64url');
  const apiKey = randomBytes(24).toString('base64url');

  const node = await startNodeProcess({
    nodeId: 'node-1',
    secret,
    apiKey,
    heartbeatIntervalMs: scenario.topology.regions[0]!.profile.heartbeatIntervalMs,
    heartbeatTimeoutMs: scenario.topology.regions[0]!.profile.heartbeatTimeoutMs,
  });
  listener.notice?.(`node-1 listening on ${node.wsUrl} (pid ${node.pid})`);
  const server: ServerCounts[] = [];
  let load: Awaited<ReturnType<Coordinator['run']>>;
  try {
    const coordinator = new Coordinator({
      scenario,
      target: { host: node.host, port: node.port, path: '/ws' },
      httpUrl: node.httpUrl,
      secret,
      apiKey,
      beforeClose: async () => {
        server.push(await fetchServerCounts(node));
      },
      sampleNodes: async () => {
        const counts = await fetchServerCounts(node);
        return typeof counts.connections === 'number' ? { [node.nodeId]: counts.connections } : {};
      },
    });
    if (listener.phase) coordinator.on('phase', (p) => listener.phase?.(p));
    if (listener.interval) coordinator.on('interval', (p) => listener.interval?.(p));
    load = await coordinator.run();
  } finally {
    const exit = await node.stop();
    if (exit.exitCode !== 0 && exit.exitCode !== undefined) {
      listener.notice?.(`node-1 exited with code ${exit.exitCode}`);
    }
  }

  const report = buildReport(load, {
    scenario,
    gates,
    startedAt,
    wallTimeMs: performance.now() - t0,
    version,
    machine: machineFacts(),
    server,
  });
  let reportPath: string | undefined;
  let files: string[] = [];
  if (options.write !== false) {
    const dir = resolve(
      options.outDir ?? join('results', `${scenario.name}-${timestamp(startedAt)}`),
    );
    files = await writeOutputs(report, dir, options, { intervals: load.intervals });
    reportPath = join(dir, 'report.json');
  }
  return { report, reportPath, files };
}
