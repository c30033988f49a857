import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * The cap on V8's young generation, as a semi-space size in MiB, in every
 * process and thread that holds many connections (nodes, load agents, device
 * workers, the network fabric). V8 grows the young generation to 16-32 MiB
 * under a connect burst and keeps it; measured here with 15,000 connections on
 * one node that was ~1.3 KB of RSS per connection (4.8 -> 3.5 KB). Small
 * semi-spaces mean more scavenges, but an idle connection allocates nothing,
 * and the connect CPU per connection did not move beyond this box's noise.
 */
export const LEAN_SEMI_SPACE_MB = 2;

/** The Node flags of a process that holds many connections (see {@link LEAN_SEMI_SPACE_MB}). */
export const LEAN_HEAP_FLAGS: readonly string[] = [`--max-semi-space-size=${LEAN_SEMI_SPACE_MB}`];

/** How a sibling module is started. */
export interface StartOptions {
  /** Holds many connections: cap the young generation ({@link LEAN_SEMI_SPACE_MB}). */
  leanHeap?: boolean;
}

/** A module to start in a child process, with the Node flags it needs. */
export interface Entry {
  /** Absolute file path. */
  path: string;
  /** Node flags: `--import tsx` when running from TypeScript sources. */
  execArgv: string[];
}

/**
 * Locates a sibling module to start as a child process. From the built package
 * (`dist/**.js`) it is plain JavaScript; from the sources (tests, `tsx`) it is
 * the `.ts` file, loaded through tsx.
 */
export function entryBeside(
  callerUrl: string,
  relativeWithoutExt: string,
  options: StartOptions = {},
): Entry {
  const fromSource = callerUrl.endsWith('.ts');
  const url = new URL(`${relativeWithoutExt}${fromSource ? '.ts' : '.js'}`, callerUrl);
  return {
    path: fileURLToPath(url),
    execArgv: [
      ...(options.leanHeap ? LEAN_HEAP_FLAGS : []),
      ...(fromSource ? ['--import', 'tsx'] : []),
    ],
  };
}

/**
 * Starts a sibling module as a worker thread. From the sources, a worker's main
 * module cannot be `.ts` even with `--import tsx` (the hook is not in place when
 * the worker's entry loads), so a two-line bootstrap registers tsx and then
 * imports the module.
 */
export function startWorkerBeside(
  callerUrl: string,
  relativeWithoutExt: string,
  workerData: unknown,
  options: StartOptions = {},
): Worker {
  const fromSource = callerUrl.endsWith('.ts');
  const entry = entryBeside(callerUrl, relativeWithoutExt);
  // A thread's young generation is its two semi-spaces and a third for large objects.
  const resourceLimits = options.leanHeap
    ? { maxYoungGenerationSizeMb: 3 * LEAN_SEMI_SPACE_MB }
    : undefined;
  if (!fromSource) return new Worker(entry.path, { workerData, resourceLimits });
  // The ESM build of tsx's API (require.resolve would give the CommonJS one).
  const tsxRoot = dirname(createRequire(callerUrl).resolve('tsx/package.json'));
  const api = pathToFileURL(join(tsxRoot, 'dist/esm/api/index.mjs')).href;
  const target = pathToFileURL(entry.path).href;
  const boot = `import(${JSON.stringify(api)}).then(({ register }) => { register(); return import(${JSON.stringify(target)}); })`;
  return new Worker(boot, { eval: true, workerData, resourceLimits });
}
