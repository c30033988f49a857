import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/** What /proc says about one process right now. */
export interface ProcessStats {
  pid: number;
  /** Resident set size, bytes (VmRSS). */
  rssBytes: number;
  /** User + system CPU time since the process started, seconds. */
  cpuSeconds: number;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/**
 * Reads a process's RSS and CPU time from /proc (Linux); undefined when the
 * process is gone or /proc is not there. Measured from outside, so a node's
 * figures never depend on its own reporting.
 */
export function readProcessStats(pid: number): ProcessStats | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? Number.NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(rssKb) || !Number.isFinite(utime) || !Number.isFinite(stime)) {
      return undefined;
    }
    return { pid, rssBytes: rssKb * 1024, cpuSeconds: (utime + stime) / USER_HZ };
  } catch {
    return undefined;
  }
}

/** Ids of `pid`'s descendants (children, their children, ...), from /proc's parent links. */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // The process ended while we looked.
    }
  }
  const out: number[] = [];
  const stack = [...(children.get(pid) ?? [])];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

/** RSS and CPU summed over a process and all its descendants, with how many processes that was. */
export function readProcessTreeStats(
  pid: number,
): (ProcessStats & { processes: number }) | undefined {
  const root = readProcessStats(pid);
  if (!root) return undefined;
  let rssBytes = root.rssBytes;
  let cpuSeconds = root.cpuSeconds;
  let processes = 1;
  for (const child of descendantsOf(pid)) {
    const s = readProcessStats(child);
    if (!s) continue;
    rssBytes += s.rssBytes;
    cpuSeconds += s.cpuSeconds;
    processes++;
  }
  return { pid, rssBytes, cpuSeconds, processes };
}

/**
 * Sets the niceness of `pid`, every thread of it and of its descendants
 * (Linux applies niceness per thread). Threads and processes that ended
 * meanwhile are skipped; returns how many threads were set.
 */
export function reniceTree(pid: number, priority: number): number {
  let set = 0;
  for (const p of [pid, ...descendantsOf(pid)]) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        setPriority(Number(tid), priority);
        set++;
      } catch {
        // The thread ended while we looked.
      }
    }
  }
  return set;
}

/** RSS and CPU summed over these processes (/proc); ones already gone are skipped. */
export function sumProcessStats(pids: number[]): {
  processes: number;
  rssBytes: number;
  cpuSeconds: number;
} {
  let rssBytes = 0;
  let cpuSeconds = 0;
  let processes = 0;
  for (const pid of pids) {
    const s = readProcessStats(pid);
    if (!s) continue;
    rssBytes += s.rssBytes;
    cpuSeconds += s.cpuSeconds;
    processes++;
  }
  return { processes, rssBytes, cpuSeconds: Math.round(cpuSeconds * 100) / 100 };
}

/** The scheduler's view of one process's main thread (the one that runs a Node process's event loop). */
export interface SchedTimes {
  /** CPU time it has run since it started, ms (`/proc/<pid>/schedstat`, first field). */
  ranMs: number;
  /**
   * Time it has waited on a run queue, runnable but not running, ms (second
   * field). The kernel adds a wait when the wait ends, so a wait still going on
   * is not in it yet: see `runnable`.
   */
  waitedMs: number;
  /** Runnable right now, running or waiting for a CPU (state `R` in `/proc/<pid>/stat`). */
  runnable: boolean;
}

/**
 * {@link SchedTimes} of `pid` and of each of its children, keyed by pid;
 * undefined when the process is gone or the kernel keeps no schedstat.
 * Children come from `/proc/<pid>/task/<pid>/children`, one read, not a scan
 * of /proc: this runs on every health check.
 */
export function readSchedTimes(pid: number): Map<number, SchedTimes> | undefined {
  const root = schedTimesOf(pid);
  if (root === undefined) return undefined;
  const out = new Map([[pid, root]]);
  let children: string[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ');
  } catch {
    // No children file: the process alone.
  }
  for (const c of children) {
    const child = Number(c);
    if (c === '' || !Number.isInteger(child)) continue;
    const times = schedTimesOf(child);
    if (times !== undefined) out.set(child, times);
  }
  return out;
}

function schedTimesOf(pid: number): SchedTimes | undefined {
  try {
    const [ran, waited] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (!Number.isFinite(ran) || !Number.isFinite(waited)) return undefined;
    return { ranMs: ran! / 1e6, waitedMs: waited! / 1e6, runnable: state === 'R' };
  } catch {
    return undefined;
  }
}

/**
 * Whether every process of a tree read before and after a span of `spanMs`
 * starved for a CPU through it: it waited on a run queue for at least `share`
 * of the span, or it is runnable at the end and ran for less than `share` of
 * it (a wait still going on, which the kernel has not added yet). A process
 * stopped, asleep or blocked at the end that did not wait is not starved: what
 * kept it from answering was its own. False when no process is in both readings.
 */
export function starvedThrough(
  before: ReadonlyMap<number, SchedTimes>,
  after: ReadonlyMap<number, SchedTimes>,
  spanMs: number,
  share: number,
): boolean {
  let seen = 0;
  for (const [pid, was] of before) {
    const now = after.get(pid);
    if (now === undefined) continue;
    seen++;
    const waited = now.waitedMs - was.waitedMs >= share * spanMs;
    const waiting = now.runnable && now.ranMs - was.ranMs < share * spanMs;
    if (!waited && !waiting) return false;
  }
  return seen > 0;
}
