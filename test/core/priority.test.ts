/**
 * A thread run ahead: only that thread's niceness moves, by its own id, and
 * only where the process may (root on Linux); elsewhere nothing changes.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { getPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { mayRaisePriority, runThisThreadAhead } from '../../core/priority.js';

/** Niceness of a thread of this process, from /proc (field 19 of its stat). */
function niceOf(tid: number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** Runs `runThisThreadAhead(by)` in a new thread: what it returned, the thread's id and its niceness then. */
function inThread(by: number): Promise<{ returned: number | null; tid: number; nice: number }> {
  const url = new URL('../../core/priority.ts', import.meta.url).href;
  // A worker's .ts module needs tsx registered in it first (as core/runtime.ts does).
  const tsxRoot = dirname(createRequire(import.meta.url).resolve('tsx/package.json'));
  const tsxApi = pathToFileURL(join(tsxRoot, 'dist/esm/api/index.mjs')).href;
  const code = `
    const { parentPort } = require('node:worker_threads');
    const { readlinkSync, readFileSync } = require('node:fs');
    import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(url)}); }).then(({ runThisThreadAhead }) => {
      const returned = runThisThreadAhead(${by});
      const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
      const stat = readFileSync('/proc/thread-self/stat', 'utf8');
      const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      parentPort.postMessage({ returned: returned ?? null, tid, nice });
      setTimeout(() => {}, 200);
    });`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', (m) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

describe.skipIf(process.platform !== 'linux')('a thread run ahead of its process', () => {
  const own = getPriority();

  it.skipIf(!mayRaisePriority())('as root: that thread only, by its id', async () => {
    const r = await inThread(5);
    expect(r.returned).toBe(Math.max(-20, own - 5));
    expect(r.nice).toBe(Math.max(-20, own - 5));
    expect(r.tid).not.toBe(process.pid);
    // This (main) thread keeps the process's niceness.
    expect(niceOf(process.pid)).toBe(own);
  });

  it('asked for nothing, or not allowed: nothing moves', async () => {
    const none = await inThread(0);
    expect(none.returned).toBeNull();
    expect(none.nice).toBe(own);
    if (!mayRaisePriority()) {
      const refused = await inThread(5);
      expect(refused.returned).toBeNull();
      expect(refused.nice).toBe(own);
    }
    expect(runThisThreadAhead(-3)).toBeUndefined();
  });
});
