import { spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PushbenchError } from '../core/errors.js';

/**
 * Node profile limits enforced for real: CPU quota and memory limit through a
 * cgroup (v2, or v1 where that is what the machine has), open files through
 * RLIMIT_NOFILE (`prlimit`). Whatever cannot be enforced is planned as such,
 * with the reason, so the run can say so before it starts; nothing here
 * pretends.
 */

/** Where cgroup file systems are mounted on Linux. */
export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

/** The cgroup period pushbench uses for CPU quotas: 100 ms, the kernel's default. */
export const CPU_PERIOD_US = 100_000;

/** Which cgroup hierarchy a limit is written to. */
export type CgroupVersion = 'v1' | 'v2';

/** How one limit is applied: a cgroup file, or the open-file rlimit set by a tool. */
export type LimitMechanism = 'cgroup-v1' | 'cgroup-v2' | 'prlimit' | 'ulimit';

/** What this machine lets pushbench enforce, found by trying (see {@link detectLimitSupport}). */
export interface LimitSupport {
  /** The cgroup hierarchy in use, or null when neither is usable. */
  cgroup: CgroupVersion | null;
  /** Mount point of the cgroup file systems (`/sys/fs/cgroup`). */
  root: string;
  /** A CPU quota can be set on a child group. */
  cpu: boolean;
  /** A memory limit can be set on a child group. */
  memory: boolean;
  /** Why cpu or memory cannot be enforced, when one of them cannot (one line for people). */
  why?: string;
  /** The same, per controller. */
  whyNot: { cpu?: string; memory?: string };
  openFiles: {
    /** RLIMIT_NOFILE hard limit children inherit; null when unknown (not Linux). */
    hardLimit: number | null;
    /** Whether a child may be given a hard limit above `hardLimit` (needs CAP_SYS_RESOURCE). */
    canRaise: boolean;
    /** What sets the limit before the node starts: `prlimit`, else the shell's `ulimit`. */
    tool: 'prlimit' | 'ulimit' | null;
    /** Absolute path of `prlimit` when found on PATH. */
    prlimitPath: string | null;
  };
}

/** A limit a profile asks for. */
export type LimitName = 'cpu' | 'memory' | 'openFiles';

/** One requested limit and whether (and how) it is enforced. */
export interface PlannedLimit {
  limit: LimitName;
  /** Cores for `cpu`, bytes for `memory`, descriptors for `openFiles`. */
  value: number;
  enforced: boolean;
  /** The setting, e.g. `cgroup v1 cpu.cfs_quota_us=50000/cpu.cfs_period_us=100000`, or `not enforced`. */
  how: string;
  /** What applies it; null when not enforced. */
  mechanism: LimitMechanism | null;
  /** Why it is not enforced, when it is not. */
  why?: string;
}

/** The limits of one node process: one entry per limit asked for (none asked: empty). */
export type LimitPlan = PlannedLimit[];

/** Limits a profile asks for; null or absent means unlimited. */
export interface LimitRequest {
  /** CPU quota in cores (0.5 = half a core). */
  cpu?: number | null;
  memoryBytes?: number | null;
  /** RLIMIT_NOFILE (soft and hard) of the node process. */
  openFiles?: number | null;
}

/**
 * What a node's cgroup has counted. Null fields are not measured (no group of
 * that controller, or the kernel lacks the file).
 */
export interface CgroupUsage {
  /** Memory charged now (v1 `memory.usage_in_bytes`, v2 `memory.current`). */
  memoryBytes: number | null;
  /** Peak memory charged (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`). */
  memoryMaxBytes: number | null;
  /** Times the memory limit was hit (v1 `memory.failcnt`, v2 `memory.events` `max`). */
  memoryLimitHits: number | null;
  /** Processes the kernel OOM-killed in the group (`oom_kill` of `memory.oom_control` / `memory.events`). */
  oomKills: number | null;
  /** CFS periods in which the group was throttled (`cpu.stat` `nr_throttled`). */
  cpuThrottled: number | null;
  /** CPU time used by the group, seconds (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`). */
  cpuUsageSeconds: number | null;
}

/** A node's cgroups (zero, one per v1 controller, or one v2 group) and how to start a process inside them. */
export interface NodeCgroup {
  /** The group directories created for this node. */
  readonly paths: string[];
  /**
   * The command line that puts the process into the groups and sets its
   * open-file limit *before* `command` runs: `sh` writes its own pid to each
   * `cgroup.procs`, then `exec`s (through `prlimit`, which also execs), so the
   * started program keeps the shell's pid.
   */
  wrap(command: string, args: string[]): { command: string; args: string[] };
  /** What the groups have counted; after {@link NodeCgroup.remove}, the last reading before removal. */
  usage(): CgroupUsage;
  /**
   * Removes the groups once the process has exited. Moves nothing: it retries
   * while a group still holds a process (an exiting child), SIGKILLs what is
   * still in it after a second (only the node's own descendants can be there),
   * and throws `PB_INTERNAL` if a group still cannot be removed.
   */
  remove(): Promise<void>;
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (!e.code) return String(e.message ?? err);
  return e.path ? `${e.code} on ${e.path}` : e.code;
}

function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** The RLIMIT_NOFILE hard limit of this process (children inherit it), from /proc/self/limits. */
function openFilesHardLimit(): number | null {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    if (hard === undefined) return null;
    return hard === 'unlimited' ? Number.POSITIVE_INFINITY : Number(hard);
  } catch {
    return null;
  }
}

/** Tries the tool on `true` with a hard limit one above the current one. */
function canRaiseOpenFiles(hard: number, prlimitPath: string | null): boolean {
  if (!Number.isFinite(hard)) return true;
  const n = hard + 1;
  const r = prlimitPath
    ? spawnSync(prlimitPath, [`--nofile=${n}:${n}`, '--', 'true'], { stdio: 'ignore' })
    : spawnSync('sh', ['-c', `ulimit -n ${n}`], { stdio: 'ignore' });
  return r.status === 0;
}

/** Creates and removes a probe group under `parent`; returns why it failed, or undefined. */
function probeGroup(parent: string, file: string): string | undefined {
  const probe = join(parent, `probe-${process.pid}`);
  try {
    mkdirSync(parent, { recursive: true });
    mkdirSync(probe);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? errText(err);
    return `cannot create ${probe}: ${code} (not root, or the cgroup is not delegated)`;
  }
  try {
    return existsSync(join(probe, file)) ? undefined : `${join(probe, file)} does not exist`;
  } finally {
    try {
      rmdirSync(probe);
    } catch {
      // An empty probe that cannot be removed is harmless; the next probe reuses the name.
    }
  }
}

/** Per controller: usable, or why not. */
type Found = { cpu: boolean; memory: boolean; whyNot: LimitSupport['whyNot'] };

function detectV1(root: string): Found {
  const whyNot: LimitSupport['whyNot'] = {};
  if (!existsSync(join(root, 'memory', 'memory.limit_in_bytes'))) {
    whyNot.memory = `no cgroup v1 memory controller mounted at ${join(root, 'memory')}`;
  } else {
    const failed = probeGroup(join(root, 'memory', 'pushbench'), 'memory.limit_in_bytes');
    if (failed) whyNot.memory = failed;
  }
  if (!existsSync(join(root, 'cpu', 'cpu.cfs_quota_us'))) {
    whyNot.cpu = `no cgroup v1 cpu controller with CFS quota mounted at ${join(root, 'cpu')}`;
  } else {
    const failed = probeGroup(join(root, 'cpu', 'pushbench'), 'cpu.cfs_quota_us');
    if (failed) whyNot.cpu = failed;
  }
  return { cpu: !whyNot.cpu, memory: !whyNot.memory, whyNot };
}

function words(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * Enables `controllers` for the children of `group` (cgroup v2): writes
 * `+cpu +memory` to its `cgroup.subtree_control` unless already there.
 */
function enableV2(group: string, controllers: string[]): void {
  const on = new Set(words(join(group, 'cgroup.subtree_control')));
  const missing = controllers.filter((c) => !on.has(c));
  if (missing.length > 0) {
    writeFileSync(join(group, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
  }
}

function detectV2(root: string): Found {
  const available = new Set(words(join(root, 'cgroup.controllers')));
  const wanted = (['cpu', 'memory'] as const).filter((c) => available.has(c));
  const whyNot: LimitSupport['whyNot'] = {};
  for (const c of ['cpu', 'memory'] as const) {
    if (!available.has(c)) whyNot[c] = `${c} is not in ${join(root, 'cgroup.controllers')}`;
  }
  const fail = (why: string): Found => {
    for (const c of wanted) whyNot[c] = why;
    return { cpu: false, memory: false, whyNot };
  };
  if (wanted.length === 0) return { cpu: false, memory: false, whyNot };
  const parent = join(root, 'pushbench');
  try {
    enableV2(root, wanted);
    mkdirSync(parent, { recursive: true });
    enableV2(parent, wanted);
  } catch (err) {
    // EBUSY here: the group holding this process is not the real root (a
    // container's namespace), and v2 forbids controllers on a group with processes.
    return fail(`cannot enable ${wanted.join('+')} for ${parent}: ${errText(err)}`);
  }
  const probe = join(parent, `probe-${process.pid}`);
  try {
    mkdirSync(probe);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? errText(err);
    return fail(`cannot create ${probe}: ${code} (not root, or the cgroup is not delegated)`);
  }
  try {
    const file = { cpu: 'cpu.max', memory: 'memory.max' } as const;
    for (const c of wanted) {
      if (!existsSync(join(probe, file[c]))) whyNot[c] = `${join(probe, file[c])} does not exist`;
    }
  } finally {
    try {
      rmdirSync(probe);
    } catch {
      // see probeGroup
    }
  }
  return { cpu: !whyNot.cpu, memory: !whyNot.memory, whyNot };
}

function summarize(
  version: CgroupVersion,
  found: Found,
  root: string,
  openFiles: LimitSupport['openFiles'],
): LimitSupport {
  const reasons = (['cpu', 'memory'] as const)
    .filter((c) => found.whyNot[c])
    .map((c) => `${c}: ${found.whyNot[c]}`);
  return {
    cgroup: found.cpu || found.memory ? version : null,
    root,
    cpu: found.cpu,
    memory: found.memory,
    ...(reasons.length > 0 && { why: `cgroup ${version}: ${reasons.join('; ')}` }),
    whyNot: found.whyNot,
    openFiles,
  };
}

/**
 * Finds out what this machine lets pushbench enforce, by creating and removing
 * a probe group under `<root>/<controller>/pushbench` (v1) or
 * `<root>/pushbench` (v2; enabling cpu and memory for its children). Cgroup v2
 * is used when `<root>/cgroup.controllers` exists (the unified layout), v1
 * when `<root>/memory` or `<root>/cpu` is a v1 hierarchy. Never throws: what
 * fails is reported in `why`. The `pushbench` parent groups are left in place
 * (other pushbench processes may be using them).
 */
export function detectLimitSupport(root: string = DEFAULT_CGROUP_ROOT): LimitSupport {
  const linux = process.platform === 'linux';
  const prlimitPath = linux ? findOnPath('prlimit') : null;
  const hardLimit = linux ? openFilesHardLimit() : null;
  const openFiles: LimitSupport['openFiles'] = {
    hardLimit,
    canRaise: hardLimit !== null && canRaiseOpenFiles(hardLimit, prlimitPath),
    tool: hardLimit === null ? null : prlimitPath ? 'prlimit' : 'ulimit',
    prlimitPath,
  };
  const none = (why: string): LimitSupport => ({
    cgroup: null,
    root,
    cpu: false,
    memory: false,
    why,
    whyNot: { cpu: why, memory: why },
    openFiles,
  });
  if (!linux) return none(`cgroups are Linux-only (this is ${process.platform})`);
  try {
    if (existsSync(join(root, 'cgroup.controllers'))) {
      return summarize('v2', detectV2(root), root, openFiles);
    }
    if (existsSync(join(root, 'memory')) || existsSync(join(root, 'cpu'))) {
      return summarize('v1', detectV1(root), root, openFiles);
    }
    return none(`no cgroup file system at ${root}`);
  } catch (err) {
    return none(errText(err));
  }
}

/** The CFS quota for `cores`, in µs per {@link CPU_PERIOD_US} (the kernel's minimum is 1 ms). */
export function cpuQuotaUs(cores: number): number {
  return Math.max(1000, Math.round(cores * CPU_PERIOD_US));
}

function notEnforced(limit: LimitName, value: number, why: string): PlannedLimit {
  return { limit, value, enforced: false, how: 'not enforced', mechanism: null, why };
}

/**
 * Decides, for each limit `request` asks for, whether and how it is enforced
 * on a machine with `support`. Pure: nothing is created.
 */
export function planLimits(request: LimitRequest, support: LimitSupport): LimitPlan {
  const plan: LimitPlan = [];
  const version = support.cgroup;
  const noCgroup = (c: 'cpu' | 'memory'): string =>
    support.whyNot[c] ?? support.why ?? `no usable cgroup ${c} controller`;
  if (request.cpu != null) {
    const cores = request.cpu;
    if (!(cores > 0)) {
      plan.push(notEnforced('cpu', cores, `cpu ${cores} is not a positive number of cores`));
    } else if (!support.cpu || version === null) {
      plan.push(notEnforced('cpu', cores, noCgroup('cpu')));
    } else {
      const quota = cpuQuotaUs(cores);
      plan.push({
        limit: 'cpu',
        value: cores,
        enforced: true,
        mechanism: version === 'v1' ? 'cgroup-v1' : 'cgroup-v2',
        how:
          version === 'v1'
            ? `cgroup v1 cpu.cfs_quota_us=${quota}/cpu.cfs_period_us=${CPU_PERIOD_US}`
            : `cgroup v2 cpu.max="${quota} ${CPU_PERIOD_US}"`,
      });
    }
  }
  if (request.memoryBytes != null) {
    const bytes = request.memoryBytes;
    if (!(bytes > 0) || !Number.isInteger(bytes)) {
      plan.push(
        notEnforced('memory', bytes, `memory ${bytes} is not a positive whole number of bytes`),
      );
    } else if (!support.memory || version === null) {
      plan.push(notEnforced('memory', bytes, noCgroup('memory')));
    } else {
      plan.push({
        limit: 'memory',
        value: bytes,
        enforced: true,
        mechanism: version === 'v1' ? 'cgroup-v1' : 'cgroup-v2',
        how:
          version === 'v1'
            ? `cgroup v1 memory.limit_in_bytes=${bytes} memory.swappiness=0 (the kernel OOM-kills the node above it)`
            : `cgroup v2 memory.max=${bytes} memory.swap.max=0 (the kernel OOM-kills the node above it)`,
      });
    }
  }
  if (request.openFiles != null) {
    const n = request.openFiles;
    const { hardLimit, canRaise, tool } = support.openFiles;
    if (!(n > 0) || !Number.isInteger(n)) {
      plan.push(notEnforced('openFiles', n, `openFiles ${n} is not a positive whole number`));
    } else if (hardLimit === null || tool === null) {
      plan.push(notEnforced('openFiles', n, 'the open-file limit cannot be read or set here'));
    } else if (n > hardLimit && !canRaise) {
      plan.push(
        notEnforced(
          'openFiles',
          n,
          `openFiles ${n} is above the hard limit ${hardLimit} and cannot be raised (needs CAP_SYS_RESOURCE); the node keeps ${hardLimit}`,
        ),
      );
    } else {
      plan.push({
        limit: 'openFiles',
        value: n,
        enforced: true,
        mechanism: tool,
        how:
          tool === 'prlimit'
            ? `prlimit --nofile=${n}:${n} (RLIMIT_NOFILE soft and hard)`
            : `sh ulimit -n ${n} (RLIMIT_NOFILE soft and hard)`,
      });
    }
  }
  return plan;
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'node';
}

/** Single-quotes `s` for sh. */
function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Makes `<parent>/<base>`, or `<base>-2`, `-3`... when taken (a restarted node of the same name). */
async function makeLeaf(parent: string, base: string): Promise<string> {
  await mkdir(parent, { recursive: true });
  for (let k = 1; ; k++) {
    const path = join(parent, k === 1 ? base : `${base}-${k}`);
    try {
      await mkdir(path);
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || k >= 100) throw err;
    }
  }
}

function readNumber(path: string): number | null {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/** The value of `key` in a flat-keyed file (`cpu.stat`, `memory.events`, `memory.oom_control`). */
function readKey(path: string, key: string): number | null {
  try {
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      const [k, v] = line.trim().split(/\s+/);
      if (k === key && v !== undefined) return Number(v);
    }
  } catch {
    // absent file: not measured
  }
  return null;
}

function sameDir(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

interface Groups {
  memory?: string;
  cpu?: string;
  cpuacct?: string;
  /** v2: the one group. */
  unified?: string;
}

function readUsage(g: Groups): CgroupUsage {
  if (g.unified) {
    const p = g.unified;
    return {
      memoryBytes: readNumber(join(p, 'memory.current')),
      memoryMaxBytes: readNumber(join(p, 'memory.peak')),
      memoryLimitHits: readKey(join(p, 'memory.events'), 'max'),
      oomKills: readKey(join(p, 'memory.events'), 'oom_kill'),
      cpuThrottled: readKey(join(p, 'cpu.stat'), 'nr_throttled'),
      cpuUsageSeconds: ((u) => (u === null ? null : u / 1e6))(
        readKey(join(p, 'cpu.stat'), 'usage_usec'),
      ),
    };
  }
  const acct = g.cpuacct ?? g.cpu;
  const usageNs = acct ? readNumber(join(acct, 'cpuacct.usage')) : null;
  return {
    memoryBytes: g.memory ? readNumber(join(g.memory, 'memory.usage_in_bytes')) : null,
    memoryMaxBytes: g.memory ? readNumber(join(g.memory, 'memory.max_usage_in_bytes')) : null,
    memoryLimitHits: g.memory ? readNumber(join(g.memory, 'memory.failcnt')) : null,
    oomKills: g.memory ? readKey(join(g.memory, 'memory.oom_control'), 'oom_kill') : null,
    cpuThrottled: g.cpu ? readKey(join(g.cpu, 'cpu.stat'), 'nr_throttled') : null,
    cpuUsageSeconds: usageNs === null ? null : usageNs / 1e9,
  };
}

const NOT_MEASURED: CgroupUsage = {
  memoryBytes: null,
  memoryMaxBytes: null,
  memoryLimitHits: null,
  oomKills: null,
  cpuThrottled: null,
  cpuUsageSeconds: null,
};

async function procsOf(path: string): Promise<number[]> {
  try {
    return (await readFile(join(path, 'cgroup.procs'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Removes one group, retrying while it still holds an exiting process. */
async function removeGroup(path: string): Promise<void> {
  const started = Date.now();
  let killed = false;
  for (;;) {
    try {
      await rmdir(path);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw err;
    }
    const waitedMs = Date.now() - started;
    if (waitedMs > 1000 && !killed) {
      // The node is gone; what is left is its own descendants (e.g. tsx's esbuild
      // service), which nobody else started. Killing them, not moving them,
      // keeps "remove moves nothing" true.
      killed = true;
      for (const pid of await procsOf(path)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (waitedMs > 3000) {
      throw new PushbenchError(
        'PB_INTERNAL',
        `cgroup ${path} still holds processes ${(await procsOf(path)).join(',')} 3s after its node exited; remove it by hand (rmdir) once they are gone`,
      );
    }
    await sleep(25);
  }
}

/**
 * Creates the cgroups that enforce the cgroup entries of `plan` for one node
 * process, named `<pid of this process>-<name>` under pushbench's own parent
 * (`<root>/<controller>/pushbench/` on v1, `<root>/pushbench/` on v2), and
 * writes the limits. With nothing to enforce by cgroup it creates nothing
 * (`wrap` then only sets the open-file limit, if planned). The caller must call
 * `remove()` once the process has exited.
 */
export async function createNodeCgroup(
  name: string,
  plan: LimitPlan,
  options: { root?: string; prlimitPath?: string | null } = {},
): Promise<NodeCgroup> {
  const root = options.root ?? DEFAULT_CGROUP_ROOT;
  const base = `${process.pid}-${safeName(name)}`;
  const cpu = plan.find((p) => p.limit === 'cpu' && p.enforced);
  const memory = plan.find((p) => p.limit === 'memory' && p.enforced);
  const files = plan.find((p) => p.limit === 'openFiles' && p.enforced);
  const groups: Groups = {};
  const created: string[] = [];
  const cleanUp = async (): Promise<void> => {
    for (const p of created.reverse()) await rmdir(p).catch(() => {});
  };
  try {
    const v2 = cpu?.mechanism === 'cgroup-v2' || memory?.mechanism === 'cgroup-v2';
    if (v2) {
      const controllers = [...(cpu ? ['cpu'] : []), ...(memory ? ['memory'] : [])];
      const parent = join(root, 'pushbench');
      enableV2(root, controllers);
      await mkdir(parent, { recursive: true });
      enableV2(parent, controllers);
      const leaf = await makeLeaf(parent, base);
      created.push(leaf);
      groups.unified = leaf;
      if (cpu) await writeFile(join(leaf, 'cpu.max'), `${cpuQuotaUs(cpu.value)} ${CPU_PERIOD_US}`);
      if (memory) {
        await writeFile(join(leaf, 'memory.max'), String(memory.value));
        // Without this the kernel would swap the node out instead of killing it.
        if (existsSync(join(leaf, 'memory.swap.max')))
          await writeFile(join(leaf, 'memory.swap.max'), '0');
      }
    } else {
      if (memory) {
        const leaf = await makeLeaf(join(root, 'memory', 'pushbench'), base);
        created.push(leaf);
        groups.memory = leaf;
        await writeFile(join(leaf, 'memory.limit_in_bytes'), String(memory.value));
        // No swapping for this group, so over the limit the node is killed, not
        // swapped out. (Not memory.memsw.limit_in_bytes: with it, recent kernels
        // fail charges on memory+swap and memory.failcnt stays 0.) Best effort:
        // some old kernels refuse it, and without swap it changes nothing.
        await writeFile(join(leaf, 'memory.swappiness'), '0').catch(() => {});
      }
      if (cpu) {
        const leaf = await makeLeaf(join(root, 'cpu', 'pushbench'), base);
        created.push(leaf);
        groups.cpu = leaf;
        await writeFile(join(leaf, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
        await writeFile(join(leaf, 'cpu.cfs_quota_us'), String(cpuQuotaUs(cpu.value)));
        // CPU time lives in cpuacct; a separate hierarchy unless co-mounted with cpu.
        const acctRoot = join(root, 'cpuacct');
        if (
          !existsSync(join(leaf, 'cpuacct.usage')) &&
          existsSync(join(acctRoot, 'cpuacct.usage')) &&
          !sameDir(acctRoot, join(root, 'cpu'))
        ) {
          const acct = await makeLeaf(join(acctRoot, 'pushbench'), base);
          created.push(acct);
          groups.cpuacct = acct;
        }
      }
    }
  } catch (err) {
    await cleanUp();
    throw new PushbenchError(
      'PB_LIMIT',
      `cannot create the cgroup of node ${name} under ${root}: ${errText(err)}; run as root, or drop cpu/memory from the profile`,
    );
  }
  const paths = [...created];
  let final: CgroupUsage | undefined;
  const prlimitPath =
    options.prlimitPath !== undefined ? options.prlimitPath : findOnPath('prlimit');
  return {
    paths,
    wrap(command, args) {
      const steps = paths.map((p) => `echo $$ > ${shQuote(join(p, 'cgroup.procs'))}`);
      let tail = [command, ...args];
      if (files) {
        if (files.mechanism === 'prlimit' && prlimitPath) {
          tail = [prlimitPath, `--nofile=${files.value}:${files.value}`, '--', ...tail];
        } else {
          steps.push(`ulimit -n ${files.value}`);
        }
      }
      if (steps.length === 0) {
        const [head, ...rest] = tail;
        return { command: head!, args: rest };
      }
      // `$$` is the shell's pid; `exec` keeps it for the program, so the node runs
      // in the groups from its first instruction and reports the pid we spawned.
      const script = `${steps.join(' && ')} && exec "$@"`;
      return { command: 'sh', args: ['-c', script, 'pushbench-limits', ...tail] };
    },
    usage() {
      return final ?? (paths.length > 0 ? readUsage(groups) : NOT_MEASURED);
    },
    async remove() {
      if (final) return;
      final = paths.length > 0 ? readUsage(groups) : NOT_MEASURED;
      const failures: string[] = [];
      for (const p of paths) {
        try {
          await removeGroup(p);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      if (failures.length > 0) throw new PushbenchError('PB_INTERNAL', failures.join('; '));
    },
  };
}
