import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { monoNowUs } from '../../core/clock.js';
import { descendantsOf } from '../../core/process-stats.js';
import { validateScenario } from '../../scenarios/schema.js';
import { signToken } from '../../server/token.js';
import { Cluster } from '../../topology/cluster.js';
import {
  createNodeCgroup,
  detectLimitSupport,
  type LimitSupport,
  planLimits,
} from '../../topology/limits.js';
import {
  BOOT_NICE,
  limitSupport,
  type NodeProcess,
  type NodeProcessOptions,
  startNodeProcess,
} from '../../topology/supervisor.js';

const SECRET = 'limits-secret';
const API_KEY = 'limits-key';
const MiB = 2 ** 20;

const support = limitSupport();
const noMemory = !support.memory;
const noCpu = !support.cpu;
const noOpenFiles = support.openFiles.tool === null || support.openFiles.hardLimit === null;
/** Why a test is skipped here, printed once so a skip is never silent. */
if (noMemory || noCpu || noOpenFiles) {
  process.stderr.write(
    `limits.test: skipping what this machine cannot enforce: ${support.why ?? ''} (openFiles tool: ${support.openFiles.tool})\n`,
  );
}

const procs: NodeProcess[] = [];
const sockets: WebSocket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await Promise.all(procs.splice(0).map((p) => p.stop(2000)));
});

/** Starts a node (limits as given) and registers it for cleanup. */
async function node(
  nodeId: string,
  limits: NodeProcessOptions['limits'],
  extraArgs: string[] = [],
  more: Partial<NodeProcessOptions> = {},
): Promise<NodeProcess> {
  const p = await startNodeProcess({
    nodeId,
    secret: SECRET,
    apiKey: API_KEY,
    heartbeatIntervalMs: 10_000,
    heartbeatTimeoutMs: 30_000,
    // Under a 0.1-core quota the TypeScript loader alone takes several seconds.
    startTimeoutMs: 60_000,
    extraArgs,
    ...(limits && { limits }),
    ...more,
  });
  procs.push(p);
  return p;
}

function note(line: string): void {
  process.stderr.write(`  measured: ${line}\n`);
}

/** `{"payload": ...}` of about `bytes` bytes. */
function bigBody(bytes: number): string {
  return JSON.stringify({ payload: 'x'.repeat(bytes) });
}

/**
 * Room messages are kept in the room's history (100 per room, idle rooms live
 * an hour), so one 60 KB message into each of many rooms grows the node by at
 * least 60 KB a request and nothing frees it. Stops early when the node exits.
 */
async function fillRooms(p: NodeProcess, rooms: number): Promise<{ ok: number; failed: number }> {
  const body = bigBody(60_000);
  let exited = false;
  void p.exited.then(() => {
    exited = true;
  });
  let next = 0;
  let ok = 0;
  let failed = 0;
  const lane = async (): Promise<void> => {
    while (!exited && next < rooms) {
      const room = `room-${next++}`;
      try {
        const res = await fetch(`${p.httpUrl}/v1/rooms/${room}/messages`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
          body,
        });
        await res.arrayBuffer();
        if (res.status === 200) ok++;
        else failed++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, lane));
  return { ok, failed };
}

/** A direct push of ~1 MB: 40k small objects the node must parse. */
const CPU_BODY = JSON.stringify({
  payload: Array.from({ length: 40_000 }, (_, i) => ({ k: i, v: 'abcdefgh' })),
});
/** `--max-body` that admits {@link CPU_BODY}. */
const CPU_ARGS = ['--max-body', String(2 * CPU_BODY.length)];

/**
 * CPU-bound work through the node's HTTP API: direct pushes whose bodies the
 * node parses (then answers 404: nobody is connected). Bodies are large so the
 * node's parsing, not the client's per-request cost, dominates. Returns the
 * elapsed host time in ms.
 */
async function pushLoad(p: NodeProcess, requests: number): Promise<number> {
  const body = CPU_BODY;
  const started = monoNowUs();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < requests) {
      next++;
      const res = await fetch(`${p.httpUrl}/v1/push/nobody`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body,
      });
      await res.arrayBuffer();
      expect(res.status).toBe(404);
    }
  };
  await Promise.all(Array.from({ length: 4 }, lane));
  return (monoNowUs() - started) / 1000;
}

/** Opens one device WebSocket; resolves true once upgraded, false on any failure or after 5 s. */
function connectDevice(p: NodeProcess, i: number): Promise<boolean> {
  const token = signToken(
    { deviceId: `dev-${i}`, accountId: 'acct', expiresAtSec: Math.floor(Date.now() / 1000) + 600 },
    SECRET,
  );
  return new Promise((resolve) => {
    const ws = new WebSocket(`${p.wsUrl}?token=${token}`);
    sockets.push(ws);
    const timer = setTimeout(() => {
      ws.terminate();
      resolve(false);
    }, 5000);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(true);
    });
    ws.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    ws.once('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

function procLimit(pid: number, name: string): string[] {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(name));
  return line?.slice(name.length).trim().split(/\s+/) ?? [];
}

const ROOT_SUPPORT: LimitSupport = {
  cgroup: 'v1',
  root: '/sys/fs/cgroup',
  cpu: true,
  memory: true,
  whyNot: {},
  openFiles: {
    hardLimit: 20_000,
    canRaise: false,
    tool: 'prlimit',
    prlimitPath: '/usr/bin/prlimit',
  },
};

describe('boot priority', () => {
  const isRoot = process.getuid?.() === 0;
  /** Niceness of every thread of `pid` and of its descendants, from /proc (field 19 of stat). */
  function niceness(pid: number): number[] {
    const out: number[] = [];
    for (const p of [pid, ...descendantsOf(pid)]) {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const stat = readFileSync(`/proc/${p}/task/${tid}/stat`, 'utf8');
        out.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
      }
    }
    return out;
  }

  /** A node of 2 worker processes, running `nice` nicer than this process once it listens. */
  const startTwoProcessNode = (nodeId: string, nice?: number) =>
    node(nodeId, undefined, [], { processes: 2, ...(nice !== undefined && { nice }) });

  it.skipIf(!isRoot)(
    "a node boots niced (as root) and every thread of its processes is back at the harness's own niceness once it listens",
    async () => {
      const p = await startTwoProcessNode('niced');
      const threads = niceness(p.pid);
      // A supervisor and 2 workers, each with V8's and libuv's threads.
      expect(threads.length).toBeGreaterThan(6);
      // Back at this process's own niceness (0 unless the tests run under `nice`).
      expect(new Set(threads)).toEqual(new Set([getPriority()]));
      expect(BOOT_NICE).toBeGreaterThan(0);
    },
  );

  // topology.nodeNice: a run's nodes stay behind its load generator. Raising
  // niceness needs no privilege, so this holds as any user.
  it('a node asked to run 10 nicer has every thread of every process 10 nicer than this one once it listens', async () => {
    const p = await startTwoProcessNode('behind', 10);
    const threads = niceness(p.pid);
    expect(threads.length).toBeGreaterThan(6);
    expect(new Set(threads)).toEqual(new Set([Math.min(19, getPriority() + 10)]));
  });
});

describe('planLimits', () => {
  it('plans a v1 CPU quota and memory limit with the files it writes', () => {
    const plan = planLimits({ cpu: 0.5, memoryBytes: 64 * MiB, openFiles: null }, ROOT_SUPPORT);
    expect(plan).toEqual([
      {
        limit: 'cpu',
        value: 0.5,
        enforced: true,
        mechanism: 'cgroup-v1',
        how: 'cgroup v1 cpu.cfs_quota_us=50000/cpu.cfs_period_us=100000',
      },
      expect.objectContaining({
        limit: 'memory',
        value: 64 * MiB,
        enforced: true,
        mechanism: 'cgroup-v1',
        how: expect.stringContaining(`memory.limit_in_bytes=${64 * MiB}`),
      }),
    ]);
  });

  it('writes cpu.max and memory.max on cgroup v2', () => {
    const plan = planLimits({ cpu: 2, memoryBytes: 128 * MiB }, { ...ROOT_SUPPORT, cgroup: 'v2' });
    expect(plan.map((p) => [p.mechanism, p.how])).toEqual([
      ['cgroup-v2', 'cgroup v2 cpu.max="200000 100000"'],
      ['cgroup-v2', expect.stringContaining(`memory.max=${128 * MiB} memory.swap.max=0`)],
    ]);
  });

  it('keeps the CPU quota at the kernel minimum of 1 ms', () => {
    const [cpu] = planLimits({ cpu: 0.001 }, ROOT_SUPPORT);
    expect(cpu?.how).toBe('cgroup v1 cpu.cfs_quota_us=1000/cpu.cfs_period_us=100000');
  });

  it('says why cpu and memory are not enforced without a writable cgroup', () => {
    const none: LimitSupport = {
      ...ROOT_SUPPORT,
      cgroup: null,
      cpu: false,
      memory: false,
      why: 'cgroup v1: memory: cannot create …: EACCES; cpu: cannot create …: EACCES',
      whyNot: {
        cpu: 'cannot create /sys/fs/cgroup/cpu/pushbench/probe-1: EACCES (not root, or the cgroup is not delegated)',
        memory:
          'cannot create /sys/fs/cgroup/memory/pushbench/probe-1: EACCES (not root, or the cgroup is not delegated)',
      },
    };
    const plan = planLimits({ cpu: 1, memoryBytes: 32 * MiB }, none);
    expect(plan.every((p) => !p.enforced && p.mechanism === null)).toBe(true);
    // Each limit gets its own controller's reason.
    expect(plan[0]?.why).toBe(none.whyNot.cpu);
    expect(plan[1]?.why).toBe(none.whyNot.memory);
    expect(plan[1]?.how).toBe('not enforced');
  });

  it('enforces an open-file limit below the hard limit with prlimit', () => {
    expect(planLimits({ openFiles: 200 }, ROOT_SUPPORT)).toEqual([
      {
        limit: 'openFiles',
        value: 200,
        enforced: true,
        mechanism: 'prlimit',
        how: 'prlimit --nofile=200:200 (RLIMIT_NOFILE soft and hard)',
      },
    ]);
  });

  it('refuses an open-file limit above a hard limit that cannot be raised, saying so', () => {
    const [files] = planLimits({ openFiles: 30_000 }, ROOT_SUPPORT);
    expect(files).toMatchObject({ enforced: false, mechanism: null });
    expect(files?.why).toContain(
      'openFiles 30000 is above the hard limit 20000 and cannot be raised',
    );
    const raisable = planLimits(
      { openFiles: 30_000 },
      { ...ROOT_SUPPORT, openFiles: { ...ROOT_SUPPORT.openFiles, canRaise: true } },
    );
    expect(raisable[0]?.enforced).toBe(true);
  });

  it('plans nothing when nothing is asked for, and rejects nonsense values', () => {
    expect(planLimits({}, ROOT_SUPPORT)).toEqual([]);
    expect(planLimits({ cpu: null, memoryBytes: null, openFiles: null }, ROOT_SUPPORT)).toEqual([]);
    const bad = planLimits({ cpu: -1, memoryBytes: 1.5, openFiles: 0 }, ROOT_SUPPORT);
    expect(bad.map((p) => p.enforced)).toEqual([false, false, false]);
  });

  it('detects this machine without throwing, and agrees with the open-file limit in /proc', () => {
    const fresh = detectLimitSupport();
    expect(fresh.cgroup === null).toBe(!fresh.cpu && !fresh.memory);
    if (fresh.cgroup === null) expect(fresh.why).toBeTruthy();
    const hard = procLimit(process.pid, 'Max open files')[1];
    expect(String(fresh.openFiles.hardLimit)).toBe(hard === 'unlimited' ? 'Infinity' : hard);
  });
});

describe('createNodeCgroup', () => {
  it('wraps only with prlimit when no cgroup is needed, and leaves the command alone when nothing is', async () => {
    const files = planLimits({ openFiles: 300 }, ROOT_SUPPORT);
    const cg = await createNodeCgroup('only-files', files, { prlimitPath: '/usr/bin/prlimit' });
    expect(cg.paths).toEqual([]);
    expect(cg.wrap('node', ['a.js'])).toEqual({
      command: '/usr/bin/prlimit',
      args: ['--nofile=300:300', '--', 'node', 'a.js'],
    });
    const nothing = await createNodeCgroup('nothing', []);
    expect(nothing.wrap('node', ['a.js'])).toEqual({ command: 'node', args: ['a.js'] });
    expect(nothing.usage().oomKills).toBeNull();
    await nothing.remove();
  });
});

describe('detectLimitSupport on other layouts', () => {
  it('reports a v2 hierarchy whose groups lack cpu.max/memory.max as unusable, saying which file', () => {
    const root = mkdtempSync(join(tmpdir(), 'pb-detect-v2-'));
    try {
      writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
      const found = detectLimitSupport(root);
      // Plain directories get no controller files: nothing is usable, and it says why.
      expect(found).toMatchObject({ cgroup: null, cpu: false, memory: false });
      expect(found.whyNot.cpu).toMatch(/cpu\.max does not exist/);
      expect(found.whyNot.memory).toMatch(/memory\.max does not exist/);
      expect(readFileSync(join(root, 'pushbench', 'cgroup.subtree_control'), 'utf8')).toBe(
        '+cpu +memory',
      );
      expect(existsSync(join(root, 'pushbench', `probe-${process.pid}`))).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('says so when there is no cgroup file system at all', () => {
    const root = mkdtempSync(join(tmpdir(), 'pb-detect-none-'));
    try {
      const found = detectLimitSupport(root);
      expect(found).toMatchObject({ cgroup: null, cpu: false, memory: false });
      expect(found.why).toBe(`no cgroup file system at ${root}`);
      expect(planLimits({ memoryBytes: 32 * MiB }, found)[0]?.why).toBe(found.why);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('createNodeCgroup on cgroup v2', () => {
  it('enables the controllers, writes cpu.max and memory.max, and execs in place', async () => {
    // A directory standing in for /sys/fs/cgroup: the files are plain files, so
    // this checks what is written and that the wrapped program keeps the pid.
    const root = mkdtempSync(join(tmpdir(), 'pb-cgroup-v2-'));
    try {
      writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
      writeFileSync(join(root, 'cgroup.subtree_control'), 'memory\n');
      const plan = planLimits(
        { cpu: 0.25, memoryBytes: 32 * MiB, openFiles: 100 },
        // The shell's ulimit when prlimit is missing.
        {
          ...ROOT_SUPPORT,
          cgroup: 'v2',
          openFiles: { ...ROOT_SUPPORT.openFiles, tool: 'ulimit', prlimitPath: null },
        },
      );
      expect(plan[2]?.how).toBe('sh ulimit -n 100 (RLIMIT_NOFILE soft and hard)');
      const cg = await createNodeCgroup('v2 node', plan, { root, prlimitPath: null });
      const [leaf] = cg.paths;
      expect(cg.paths).toEqual([join(root, 'pushbench', `${process.pid}-v2_node`)]);
      // Only what is missing is enabled at the root; everything below pushbench.
      expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu');
      expect(readFileSync(join(root, 'pushbench', 'cgroup.subtree_control'), 'utf8')).toBe(
        '+cpu +memory',
      );
      expect(readFileSync(join(leaf!, 'cpu.max'), 'utf8')).toBe('25000 100000');
      expect(readFileSync(join(leaf!, 'memory.max'), 'utf8')).toBe(String(32 * MiB));
      const { command, args } = cg.wrap('sh', ['-c', 'echo "$$ $(ulimit -n)"']);
      const [pid, files] = execFileSync(command, args, { encoding: 'utf8' }).trim().split(' ');
      expect(readFileSync(join(leaf!, 'cgroup.procs'), 'utf8').trim()).toBe(pid);
      expect(files).toBe('100');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('enforced node limits', () => {
  it.skipIf(noMemory)(
    'a node over its memory limit is OOM-killed by the kernel; without the limit it survives the same load',
    async () => {
      // A node booting from sources through the TypeScript loader sits near
      // 64 MiB before any load (seen at 63.9 MiB, and OOM-killed before it
      // listened): the limit leaves it room to start and 4,000 x 60 KB of
      // room history (~240 MB) still runs it over.
      const limitBytes = 160 * MiB;
      const limited = await node('mem-limited', { memoryBytes: limitBytes });
      expect(limited.limits).toEqual([
        expect.objectContaining({ limit: 'memory', value: limitBytes, enforced: true }),
      ]);
      const atStart = limited.usage();
      const load = await fillRooms(limited, 4000);
      // Bounded: a node that is not killed must fail here, not hang the test.
      const exit = await Promise.race([
        limited.exited,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 15_000).unref()),
      ]);
      const usage = limited.usage();
      note(
        `memory-limited node: ${(atStart.memoryBytes ?? 0) / MiB} MiB at start, peak ${(usage.memoryMaxBytes ?? 0) / MiB} MiB, killed after ${load.ok} x 60 KB room messages; oom_kill ${usage.oomKills}, failcnt ${usage.memoryLimitHits}`,
      );
      expect(exit?.signal).toBe('SIGKILL');
      expect(exit?.cleanupError).toBeUndefined();
      expect(usage.oomKills).toBeGreaterThanOrEqual(1);
      expect(usage.memoryLimitHits).toBeGreaterThan(0);
      expect(usage.memoryMaxBytes).toBeGreaterThan(limitBytes * 0.9);
      expect(load.ok).toBeLessThan(4000);

      const free = await node('mem-free', undefined);
      expect(free.limits).toEqual([]);
      const same = await fillRooms(free, 4000);
      expect(same).toEqual({ ok: 4000, failed: 0 });
      const health = await fetch(`${free.httpUrl}/healthz`);
      expect(health.status).toBe(200);
    },
    120_000,
  );

  it.skipIf(noCpu)(
    'a 0.1-core quota makes the same CPU-bound load several times slower and is throttled',
    async () => {
      const free = await node('cpu-free', undefined, CPU_ARGS);
      const slow = await node('cpu-slow', { cpu: 0.1 }, CPU_ARGS);
      expect(slow.limits).toEqual([
        expect.objectContaining({ limit: 'cpu', value: 0.1, enforced: true }),
      ]);
      // Warm both up (JIT, connection pools) before timing.
      await pushLoad(free, 5);
      await pushLoad(slow, 5);
      const freeMs = await pushLoad(free, 60);
      const slowMs = await pushLoad(slow, 60);
      const usage = slow.usage();
      note(
        `60 parsed 1 MB pushes: unconstrained ${freeMs.toFixed(0)} ms, cpu 0.1 ${slowMs.toFixed(0)} ms (x${(slowMs / freeMs).toFixed(1)}); nr_throttled ${usage.cpuThrottled}, cpu ${usage.cpuUsageSeconds?.toFixed(2)} s`,
      );
      // A ratio, not a wall-clock bound: both runs share this machine's noise.
      expect(slowMs / freeMs).toBeGreaterThan(2.5);
      expect(usage.cpuThrottled).toBeGreaterThan(0);
      expect(usage.cpuUsageSeconds).toBeGreaterThan(0);
    },
    180_000,
  );

  it.skipIf(noOpenFiles)(
    'an open-file limit of 200 is in /proc/<pid>/limits and stops connections near 200',
    async () => {
      const p = await node('files', { openFiles: 200 });
      expect(p.limits).toEqual([
        expect.objectContaining({ limit: 'openFiles', value: 200, enforced: true }),
      ]);
      expect(procLimit(p.pid, 'Max open files').slice(0, 2)).toEqual(['200', '200']);
      const first = await Promise.all(Array.from({ length: 100 }, (_, i) => connectDevice(p, i)));
      expect(first.every(Boolean)).toBe(true);
      const more = await Promise.all(
        Array.from({ length: 200 }, (_, i) => connectDevice(p, 100 + i)),
      );
      const opened = 100 + more.filter(Boolean).length;
      note(`openFiles 200: ${opened} of 300 device connections upgraded`);
      expect(opened).toBeLessThan(200);
      expect(opened).toBeGreaterThan(150);
    },
    60_000,
  );

  it.skipIf(noMemory || noCpu)("removes the node's cgroups once it has exited", async () => {
    const p = await node('cleanup', { cpu: 0.5, memoryBytes: 256 * MiB });
    expect(p.cgroupPaths.length).toBeGreaterThan(0);
    for (const dir of p.cgroupPaths) {
      expect(readFileSync(`${dir}/cgroup.procs`, 'utf8')).toContain(String(p.pid));
    }
    const memDir = p.cgroupPaths.find((d) => existsSync(`${d}/memory.limit_in_bytes`));
    if (memDir) {
      expect(readFileSync(`${memDir}/memory.limit_in_bytes`, 'utf8').trim()).toBe(
        String(256 * MiB),
      );
    }
    await p.stop();
    for (const dir of p.cgroupPaths) expect(existsSync(dir)).toBe(false);
  });
});

describe('cluster node profiles', () => {
  it('passes the profile limits to its nodes and lists what it cannot enforce', async () => {
    const hard = support.openFiles.hardLimit ?? 20_000;
    const over = Number.isFinite(hard) ? hard + 10_000 : 1e9;
    const scenario = validateScenario(
      {
        name: 'limits',
        devices: { count: 1 },
        duration: '1s',
        workers: 1,
        topology: {
          regions: [{ name: 'eu', nodes: 1, profile: 'small' }],
          profiles: { small: { memory: '256MiB', openFiles: over } },
        },
      },
      { cores: 1 },
    );
    const cluster = await Cluster.start(scenario, { secret: SECRET, apiKey: API_KEY });
    try {
      const [n] = cluster.describe();
      expect(n?.limits.map((l) => l.limit)).toEqual(['memory', 'openFiles']);
      expect(n?.limits[0]?.enforced).toBe(support.memory);
      const notes = cluster.limitNotes();
      if (!support.openFiles.canRaise) {
        expect(notes).toContainEqual(
          expect.stringContaining(
            `openFiles ${over} not enforced: openFiles ${over} is above the hard limit`,
          ),
        );
      }
      if (!support.memory) expect(notes).toContainEqual(expect.stringContaining('memory'));
    } finally {
      await cluster.stop();
    }
  });
});
