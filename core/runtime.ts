import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

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
export function entryBeside(callerUrl: string, relativeWithoutExt: string): Entry {
  const fromSource = callerUrl.endsWith('.ts');
  const url = new URL(`${relativeWithoutExt}${fromSource ? '.ts' : '.js'}`, callerUrl);
  return { path: fileURLToPath(url), execArgv: fromSource ? ['--import', 'tsx'] : [] };
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
): Worker {
  const entry = entryBeside(callerUrl, relativeWithoutExt);
  if (entry.execArgv.length === 0) return new Worker(entry.path, { workerData });
  // The ESM build of tsx's API (require.resolve would give the CommonJS one).
  const tsxRoot = dirname(createRequire(callerUrl).resolve('tsx/package.json'));
  const api = pathToFileURL(join(tsxRoot, 'dist/esm/api/index.mjs')).href;
  const target = pathToFileURL(entry.path).href;
  const boot = `import(${JSON.stringify(api)}).then(({ register }) => { register(); return import(${JSON.stringify(target)}); })`;
  return new Worker(boot, { eval: true, workerData });
}
