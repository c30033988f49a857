import { readFileSync } from 'node:fs';

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
