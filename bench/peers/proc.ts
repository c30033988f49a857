/**
 * Process-tree figures from /proc (Linux): a tool's RSS and CPU time are those
 * of its root process plus every live descendant (found through the ppid field
 * of /proc/<pid>/stat), so a tool that forks workers or execs a VM is measured
 * whole. CPU time of descendants that already exited is not counted (the tools
 * measured here keep their processes for the whole run). Also counts the host's
 * TCP sockets in TIME_WAIT, which must drain between tools.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readProcessStats } from '../../core/process-stats.js';

/** RSS and CPU of one process tree at one instant. */
export interface TreeSample {
  /** Pids in the tree, root first. */
  pids: number[];
  /** Sum of VmRSS over the tree, bytes (shared pages count once per process). */
  rssBytes: number;
  /** Sum of user + system CPU time over the tree, seconds. */
  cpuSeconds: number;
  /** When the sample was taken, `performance.now()` ms. */
  atMs: number;
}

/** The parent pid of every process on the host. */
function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(pid, ppid);
    } catch {
      // The process exited while we listed /proc.
    }
  }
  return parents;
}

/** `root` and all its live descendants, root first. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parentPids()) {
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** Samples the RSS and CPU of `root`'s process tree; a tree whose root is gone samples as zero. */
export function sampleTree(root: number): TreeSample {
  const pids: number[] = [];
  let rssBytes = 0;
  let cpuSeconds = 0;
  for (const pid of processTree(root)) {
    const s = readProcessStats(pid);
    if (!s) continue;
    pids.push(pid);
    rssBytes += s.rssBytes;
    cpuSeconds += s.cpuSeconds;
  }
  return { pids, rssBytes, cpuSeconds, atMs: performance.now() };
}

/** TCP sockets (IPv4 and IPv6) in TIME_WAIT on this host, from /proc/net/tcp{,6}. */
export function timeWaitSockets(): number {
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    // "sl local rem st ...": the 4th field is the state in hex; 06 is TIME_WAIT.
    for (const line of text.split('\n')) if (line.trim().split(/\s+/)[3] === '06') n++;
  }
  return n;
}
