import { getPriority } from 'node:os';
import { execa, type ResultPromise } from 'execa';
import { PushbenchError } from '../core/errors.js';
import { mayRaisePriority } from '../core/priority.js';
import { reniceTree } from '../core/process-stats.js';
import { entryBeside } from '../core/runtime.js';
import {
  type CgroupUsage,
  createNodeCgroup,
  detectLimitSupport,
  type LimitPlan,
  type LimitRequest,
  type LimitSupport,
  type NodeCgroup,
  planLimits,
} from './limits.js';

/** Settings for one node process. */
export interface NodeProcessOptions {
  nodeId: string;
  secret: string;
  apiKey: string;
  host?: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** How long to wait for the `listening` line. Default 15 s. */
  startTimeoutMs?: number;
  /** Join the embedded cluster of the node at this http:// URL. */
  join?: string;
  /** Share registry and broker through this Redis. */
  redisUrl?: string;
  /** The registry's Redis when reached another way than `redisUrl` (its own datastore link). */
  registryRedisUrl?: string;
  redisPrefix?: string;
  /** d2d target cache TTL (0: off). Default the node's. */
  d2dCacheTtlMs?: number;
  /** Capacity and what happens at it (see `pushbench serve --overload`). */
  maxConnections?: number;
  overload?: 'refuse' | 'unhealthy' | 'crash';
  drainWindowMs?: number;
  maxLifetimeMs?: number;
  admissionRateHz?: number;
  /** Seed of the node's own random choices. */
  seed?: number;
  /**
   * The network namespace to run in (a kernel-engine host, topology/kernel/fabric.ts):
   * the node is a real process on that host; `host` should then be the host's address.
   */
  namespace?: string;
  /** The port to listen on; default 0 (any free one). A kernel-engine host keeps one port across restarts. */
  port?: number;
  /**
   * How much nicer than this process the node runs once it listens, 0-19 (see
   * `topology.nodeNice`; capped at 19). Default 0. Raising niceness needs no
   * privilege; booting nicer still (BOOT_NICE) and coming back up does, so
   * without root the node boots at its running niceness.
   */
  nice?: number;
  /** Worker processes sharing the node's port (`serve --processes`). Default 1. */
  processes?: number;
  /** More `serve` flags, e.g. `['--d2d-rate', '100']`. */
  extraArgs?: string[];
  /**
   * CPU quota (cores), memory limit (bytes) and open-file limit of the process,
   * enforced with a cgroup and prlimit where this machine permits; see
   * `NodeProcess.limits` for what was. Default: none.
   */
  limits?: LimitRequest;
}

/** How a node process ended. */
export interface NodeExit {
  exitCode: number | undefined;
  signal: string | undefined;
  /**
   * The last stderr line, when there was one; for a multi-process node whose
   * worker died, the worker's own last line before it (the primary's line
   * only says which process exited).
   */
  lastError: string;
  /** Set when the node's cgroups could not be removed after it exited. */
  cleanupError?: string;
}

/** A running reference node in its own process. */
export interface NodeProcess {
  nodeId: string;
  pid: number;
  wsUrl: string;
  httpUrl: string;
  host: string;
  port: number;
  /** Each limit asked for, whether it is enforced and how (empty when none was asked for). */
  readonly limits: LimitPlan;
  /** The node's cgroup directories (empty without a cgroup limit); gone once `exited` resolves. */
  readonly cgroupPaths: readonly string[];
  /**
   * What the node's cgroups count (memory, OOM kills, throttling, CPU time);
   * all null without a cgroup. After exit, the last reading before the groups were removed.
   */
  usage(): CgroupUsage;
  /** Resolves when the process has exited, for whatever reason, and its cgroups are removed. */
  readonly exited: Promise<NodeExit>;
  /** Sends SIGTERM and waits for exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<NodeExit>;
  /** Sends a signal now (a real `kill`), without waiting. */
  signal(sig: 'SIGKILL' | 'SIGTERM' | 'SIGSTOP' | 'SIGCONT'): void;
}

function optionalArgs(o: NodeProcessOptions): string[] {
  const args: string[] = [];
  if (o.join) args.push('--join', o.join);
  if (o.processes !== undefined && o.processes > 1) args.push('--processes', String(o.processes));
  if (o.seed !== undefined) args.push('--seed', String(o.seed));
  if (o.redisUrl) args.push('--redis', o.redisUrl);
  if (o.registryRedisUrl) args.push('--registry-redis', o.registryRedisUrl);
  if (o.redisPrefix) args.push('--redis-prefix', o.redisPrefix);
  if (o.d2dCacheTtlMs !== undefined) args.push('--d2d-cache-ttl', `${o.d2dCacheTtlMs}ms`);
  if (o.maxConnections !== undefined) args.push('--max-connections', String(o.maxConnections));
  if (o.overload) args.push('--overload', o.overload);
  if (o.drainWindowMs !== undefined) args.push('--drain-window', `${o.drainWindowMs}ms`);
  if (o.maxLifetimeMs !== undefined) {
    // The node's default jitter (3 min) would swallow short lifetimes: keep it to a tenth.
    args.push('--max-lifetime', `${o.maxLifetimeMs}ms`);
    args.push('--lifetime-jitter', `${Math.round(Math.min(180_000, o.maxLifetimeMs / 10))}ms`);
  }
  if (o.admissionRateHz !== undefined) args.push('--admission-rate', String(o.admissionRateHz));
  return [...args, ...(o.extraArgs ?? [])];
}

const LISTENING = /^listening (wss?:\/\/\S+) (https?:\/\/\S+)$/m;

let support: LimitSupport | undefined;

/** What this machine can enforce; probed once per process (it creates and removes a cgroup). */
export function limitSupport(): LimitSupport {
  support ??= detectLimitSupport();
  return support;
}

/**
 * The node's cgroups, made before it starts. A failure to create them (the
 * probe passed, the real group did not) turns the cgroup entries of the plan
 * into "not enforced" with the reason rather than failing the run.
 */
async function limitsFor(
  nodeId: string,
  request: LimitRequest | undefined,
): Promise<{ plan: LimitPlan; cgroup: NodeCgroup }> {
  const s = limitSupport();
  const plan = planLimits(request ?? {}, s);
  try {
    return {
      plan,
      cgroup: await createNodeCgroup(nodeId, plan, {
        root: s.root,
        prlimitPath: s.openFiles.prlimitPath,
      }),
    };
  } catch (err) {
    const why = (err as Error).message;
    const degraded = plan.map((p) =>
      p.mechanism === 'cgroup-v1' || p.mechanism === 'cgroup-v2'
        ? { ...p, enforced: false, how: 'not enforced', mechanism: null, why }
        : p,
    );
    return { plan: degraded, cgroup: await createNodeCgroup(nodeId, degraded) };
  }
}

/**
 * Niceness a node boots at. Booting (loading modules, compiling, forking its
 * workers) is a burst of ~0.3 s of CPU per process that serves nobody yet; on a
 * small box, a scale-up's five boots at once would take the cores from the
 * load generator and the running nodes, and the generator would mark the run
 * invalid for a lag the system under test would not have (its new nodes boot on
 * machines of their own). Niced, the boots take what the running work leaves.
 * Only where the priority can be raised back (root): elsewhere nodes boot at
 * the niceness they run at.
 */
export const BOOT_NICE = 15;

/**
 * Starts `pushbench serve` as a real child process (so later faults are real
 * signals) and resolves once it prints its `listening` line.
 */
export async function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  const entry = entryBeside(import.meta.url, '../bin/pushbench', { leanHeap: true });
  const host = options.host ?? '127.0.0.1';
  const { plan, cgroup } = await limitsFor(options.nodeId, options.limits);
  const serve = [
    ...entry.execArgv,
    entry.path,
    'serve',
    '--host',
    host,
    '--port',
    String(options.port ?? 0),
    '--node-id',
    options.nodeId,
    '--heartbeat-interval',
    `${options.heartbeatIntervalMs}ms`,
    '--heartbeat-timeout',
    `${options.heartbeatTimeoutMs}ms`,
    ...optionalArgs(options),
  ];
  // `ip netns exec` enters the host's namespace and execs the node: the pid stays the
  // node's. It mounts a sysfs of that namespace over /sys, which hides the cgroup file
  // systems, so the wrapper around it puts the process into the node's cgroups first;
  // `exec` keeps the pid and the groups, so `child.pid` is the node's own.
  const { command: inner, args: innerArgs } =
    options.namespace === undefined
      ? cgroup.wrap(process.execPath, serve)
      : cgroup.wrap('ip', ['netns', 'exec', options.namespace, process.execPath, ...serve]);
  // As root the node boots at BOOT_NICE and is set to its running niceness once it
  // listens; elsewhere it runs at that from the start. Both relative to this
  // process's own, so that a run started under `nice` keeps its nodes behind it.
  const own = getPriority();
  const nice = Math.min(19, own + (options.nice ?? 0));
  const bootNice = mayRaisePriority() ? Math.max(BOOT_NICE, nice) : nice;
  const [command, args] =
    bootNice > own
      ? ['nice', ['-n', String(bootNice - own), inner, ...innerArgs]]
      : [inner, innerArgs];
  const child: ResultPromise = execa(command, args, {
    // Secrets go through the environment, not argv, so `ps` does not show them.
    env: { PUSHBENCH_SECRET: options.secret, PUSHBENCH_API_KEY: options.apiKey },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    reject: false,
    cleanup: true,
    buffer: false,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited: Promise<NodeExit> = child.then(async (r) => {
    const exit: NodeExit = {
      exitCode: r.exitCode,
      signal: r.signal,
      lastError: lastErrorOf(stderr),
    };
    try {
      await cgroup.remove();
    } catch (err) {
      exit.cleanupError = (err as Error).message;
    }
    return exit;
  });
  const urls = await new Promise<{ wsUrl: string; httpUrl: string }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new PushbenchError(
          'PB_SERVER_START',
          `node ${options.nodeId} did not report listening within ${options.startTimeoutMs ?? 15_000}ms`,
        ),
      );
    }, options.startTimeoutMs ?? 15_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = LISTENING.exec(out);
      if (m?.[1] && m[2]) {
        clearTimeout(timer);
        resolve({ wsUrl: m[1], httpUrl: m[2] });
      }
    });
    void exited.then((r) => {
      clearTimeout(timer);
      reject(
        new PushbenchError(
          'PB_SERVER_START',
          `node ${options.nodeId} exited (code ${r.exitCode ?? r.signal}) before listening: ${stderr.trim().split('\n').pop() ?? ''}`,
        ),
      );
    });
  });
  if (bootNice !== nice && child.pid !== undefined) reniceTree(child.pid, nice);
  const url = new URL(urls.httpUrl);
  return {
    nodeId: options.nodeId,
    pid: child.pid ?? 0,
    ...urls,
    host: url.hostname,
    port: Number(url.port),
    limits: plan,
    cgroupPaths: cgroup.paths,
    usage: () => cgroup.usage(),
    exited,
    signal(sig) {
      child.kill(sig);
    },
    async stop(graceMs = 5000) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

/** The last stderr line, with the dead worker's last line before it when the primary's line names one. */
function lastErrorOf(stderr: string): string {
  // A node's start-up warnings (`node <id>: warning: ...`) say nothing of how it ended.
  const lines = stderr
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^node \S+: warning: /.test(l));
  const last = lines.pop() ?? '';
  if (!/: process \d+ exited /.test(last)) return last;
  const cause = lines.filter((l) => !/^\s+at /.test(l)).pop();
  return cause === undefined ? last : `${last} (its last words: ${cause.trim()})`;
}
