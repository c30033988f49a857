import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';

/** Facts about the machine a run happened on; every report carries them. */
export interface MachineFacts {
  cores: number;
  cpuModel: string;
  memoryBytes: number;
  node: string;
  platform: string;
  arch: string;
  /** RLIMIT_NOFILE soft limit of this process, or null where it cannot be read. */
  openFilesLimit: number | null;
}

/** Reads the soft RLIMIT_NOFILE of this process from /proc (Linux); null elsewhere. */
export function openFilesLimit(): number | null {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(limits);
    if (!m?.[1]) return null;
    return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
  } catch {
    return null;
  }
}

/** Ephemeral ports the kernel hands out per source address (`ip_local_port_range`); null elsewhere. */
export function ephemeralPorts(): number | null {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    return lo !== undefined && hi !== undefined && hi >= lo ? hi - lo + 1 : null;
  } catch {
    return null;
  }
}

/** What one process of this machine may use, read now: files, heap, ports. */
export function processLimits(): {
  openFiles: number | null;
  heapBytes: number;
  ephemeralPorts: number | null;
} {
  return {
    openFiles: openFilesLimit(),
    heapBytes: getHeapStatistics().heap_size_limit,
    ephemeralPorts: ephemeralPorts(),
  };
}

/** Reads this machine's facts. */
export function machineFacts(): MachineFacts {
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryBytes: totalmem(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    openFilesLimit: openFilesLimit(),
  };
}
