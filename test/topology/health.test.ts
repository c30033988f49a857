import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { readSchedTimes, type SchedTimes, starvedThrough } from '../../core/process-stats.js';
import { type HealthCheck, HealthState, probeHealthz } from '../../topology/network/health.js';
import { parseBackendSpec } from '../../topology/network/spec.js';
import type { HealthCheckSpec } from '../../topology/network/types.js';

const SPEC: HealthCheckSpec = { intervalMs: 500, timeoutMs: 300, fall: 2, rise: 1 };

describe('health checks of a node this machine starves', () => {
  it('counts a tree starved only when every process in both readings waited, or is still waiting, through its share', () => {
    const t = (ranMs: number, waitedMs: number, runnable = false): SchedTimes => ({
      ranMs,
      waitedMs,
      runnable,
    });
    const before = new Map([
      [10, t(10, 100)],
      [11, t(10, 50)],
    ]);
    const starved = (after: [number, SchedTimes][]) =>
      starvedThrough(before, new Map(after), 500, 0.5);
    expect(
      starved([
        [10, t(12, 400)],
        [11, t(11, 350)],
      ]),
    ).toBe(true);
    // One worker ran and sleeps: the node was not starved as a whole.
    expect(
      starved([
        [10, t(12, 400)],
        [11, t(400, 60)],
      ]),
    ).toBe(false);
    // Waiting now, a wait the kernel has not added yet: starved, unless it ran through the span.
    expect(
      starved([
        [10, t(12, 100, true)],
        [11, t(11, 350)],
      ]),
    ).toBe(true);
    expect(
      starved([
        [10, t(400, 100, true)],
        [11, t(11, 350)],
      ]),
    ).toBe(false);
    // Asleep (or stopped) at the end without having waited: its own doing.
    expect(
      starved([
        [10, t(12, 100)],
        [11, t(11, 350)],
      ]),
    ).toBe(false);
    // A worker that ended meanwhile is left out; the rest decide.
    expect(starved([[10, t(12, 400)]])).toBe(true);
    expect(starved([])).toBe(false);
  });

  it('leaves the fall/rise state alone on a starved check, and counts it', () => {
    const state = new HealthState(true, false);
    expect(state.record('down', SPEC)).toBe(false);
    expect(state.record('starved', SPEC)).toBe(false);
    expect(state.record('starved', SPEC)).toBe(false);
    expect(state.healthy).toBe(true);
    expect(state.starved).toBe(2);
    // Two failures in a row, a starved check between them or not, take it out.
    expect(state.record('down', SPEC)).toBe(true);
    expect(state.healthy).toBe(false);
  });

  it("carries a backend's pid into the network process, and refuses a bad one in one line", () => {
    const b = { nodeId: 'n-1', host: '10.0.0.1', port: 7001 };
    expect(parseBackendSpec({ ...b, pid: 4242 }).pid).toBe(4242);
    expect(parseBackendSpec(b).pid).toBeUndefined();
    expect(() => parseBackendSpec({ ...b, pid: -3 })).toThrow(
      'bad backend: backend.pid must be an integer >= 1 (got -3)',
    );
  });

  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });

  const canPin =
    existsSync('/proc/self/schedstat') &&
    existsSync('/usr/bin/taskset') &&
    existsSync('/usr/bin/chrt');
  it.skipIf(!canPin)(
    'calls a live node that waits for its CPU starved, and a stopped one down (a real process, pinned behind a busy loop)',
    async () => {
      // The node: an HTTP server answering /healthz, on CPU 0 at SCHED_IDLE, so any busy
      // process on CPU 0 runs ahead of it; exec keeps the pid the node's own.
      const node = spawn(
        'taskset',
        [
          '-c',
          '0',
          'chrt',
          '-i',
          '0',
          process.execPath,
          '-e',
          `const s = require('node:http').createServer((q, r) => r.end('ok'));
           s.listen(0, '127.0.0.1', () => console.log(s.address().port));
           // Work of its own: it is ready to run most of the time, as a busy node is.
           setInterval(() => { const t = Date.now(); while (Date.now() - t < 5); }, 1);`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(node);
      const [line] = (await once(node.stdout!, 'data')) as [Buffer];
      const port = Number(String(line).trim());
      const pid = node.pid!;
      expect(readSchedTimes(pid)?.get(pid)?.ranMs).toBeGreaterThan(0);
      expect(await probeHealthz('127.0.0.1', port, null, 2000, { pid })).toBe('up');

      // A busy loop on the same CPU: the node is ready to run and waits.
      const hog = spawn('taskset', ['-c', '0', 'sh', '-c', 'while :; do :; done'], {
        stdio: 'ignore',
      });
      children.push(hog);
      await new Promise((r) => setTimeout(r, 200));
      const checks: HealthCheck[] = [];
      for (let i = 0; i < 4; i++)
        checks.push(await probeHealthz('127.0.0.1', port, null, 300, { pid }));
      // It may get a slice within a check and answer; it never times out unexcused.
      expect(checks).not.toContain('down');
      expect(checks).toContain('starved');
      // However starved (and busy) the node, a check whose handshake never completes is the
      // network's doing, not the CPU's: a socket that never accepts, its queue full, answers
      // no SYN, as a blackholed host does.
      const deaf = spawn(
        'python3',
        [
          '-c',
          `import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
print(s.getsockname()[1], flush=True); time.sleep(60)`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(deaf);
      const [deafLine] = (await once(deaf.stdout!, 'data')) as [Buffer];
      const deafPort = Number(String(deafLine).trim());
      const fill = Array.from({ length: 3 }, () =>
        connect(deafPort, '127.0.0.1').on('error', () => {}),
      );
      await new Promise((r) => setTimeout(r, 100));
      expect(await probeHealthz('127.0.0.1', deafPort, null, 300, { pid })).toBe('down');
      for (const f of fill) f.destroy();
      hog.kill('SIGKILL');
      // Served again; the wait it was in is now on its account, before the next check starts.
      expect(await probeHealthz('127.0.0.1', port, null, 2000, { pid })).toBe('up');

      // A stopped process is not waiting for a CPU: its timeout is its own.
      node.kill('SIGSTOP');
      try {
        expect(await probeHealthz('127.0.0.1', port, null, 300, { pid })).toBe('down');
      } finally {
        node.kill('SIGCONT');
      }
      expect(await probeHealthz('127.0.0.1', port, null, 2000, { pid })).toBe('up');
    },
    20_000,
  );
});
