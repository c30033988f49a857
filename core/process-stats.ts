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
