import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import Module, { register } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PushbenchError } from '../core/errors.js';
import { builtinScenarios } from './builtin/index.js';
import { validateScenario } from './schema.js';
import type { Scenario, ScenarioInput } from './types.js';

/** Command-line overrides of scenario fields; each is optional. */
export interface ScenarioOverrides {
  devices?: number;
  rate?: number;
  duration?: string | number;
  workers?: number;
  connectRate?: number;
  /** Gates added to the scenario's own. */
  gates?: string[];
  seed?: number;
  /** Any field by path, e.g. `{"devices.count": 500, "topology.heartbeatInterval": "5s"}`; applied last. */
  set?: Record<string, unknown>;
}

/** The short names `--matrix` and `--set` accept for common fields. */
export const fieldAliases: Readonly<Record<string, string>> = {
  devices: 'devices.count',
  rate: 'traffic.direct.rate',
  'connect-rate': 'devices.connectRate',
  connectRate: 'devices.connectRate',
  payload: 'traffic.direct.payloadBytes',
};

/** Splits `a.b[1].c` into `['a', 'b', 1, 'c']`; throws `PB_USAGE` on a malformed path. */
export function parseFieldPath(path: string): (string | number)[] {
  const full = fieldAliases[path] ?? path;
  const parts: (string | number)[] = [];
  for (const piece of full.split('.')) {
    const m = /^([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)$/.exec(piece);
    if (!m?.[1]) {
      throw new PushbenchError(
        'PB_USAGE',
        `bad field path "${path}": write e.g. devices.count or topology.regions[0].nodes`,
      );
    }
    parts.push(m[1]);
    for (const idx of (m[2] ?? '').matchAll(/\[(\d+)\]/g)) parts.push(Number(idx[1]));
  }
  return parts;
}

/** Parses a `--set`/`--matrix` value: JSON when it parses (`500`, `true`, `[1,2]`), else the raw string (`20s`, `round-robin`). */
export function parseFieldValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Parses `path=value` (as given to `--set`). */
export function parseAssignment(text: string): [string, unknown] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new PushbenchError('PB_USAGE', `--set needs path=value, got "${text}"`);
  const path = text.slice(0, eq).trim();
  parseFieldPath(path);
  return [path, parseFieldValue(text.slice(eq + 1))];
}

function setPath(root: Record<string, unknown>, path: string, value: unknown): void {
  const parts = parseFieldPath(path);
  let node: Record<string | number, unknown> = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const key = parts[i]!;
    const next = node[key];
    if (typeof next === 'object' && next !== null) {
      node = next as Record<string | number, unknown>;
    } else {
      const created: Record<string | number, unknown> =
        typeof parts[i + 1] === 'number' ? ([] as unknown as Record<number, unknown>) : {};
      node[key] = created;
      node = created;
    }
  }
  node[parts[parts.length - 1]!] = value;
}

/** Names of the built-in scenarios. */
export function listBuiltinScenarios(): { name: string; description: string }[] {
  return Object.entries(builtinScenarios).map(([name, s]) => ({
    name,
    description: s.description ?? '',
  }));
}

function looksLikePath(ref: string): boolean {
  return ref.includes('/') || ref.includes('\\') || /\.(json|js|mjs|ts|mts)$/.test(ref);
}

async function loadFile(ref: string): Promise<unknown> {
  const path = resolve(ref);
  const ext = extname(path);
  if (ext === '.json') {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      throw new PushbenchError('PB_UNKNOWN_SCENARIO', `scenario file ${ref} cannot be read`);
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new PushbenchError(
        'PB_BAD_SCENARIO',
        `scenario file ${ref} is not valid JSON: ${(err as Error).message}`,
      );
    }
  }
  if (!['.js', '.mjs', '.ts', '.mts'].includes(ext)) {
    throw new PushbenchError(
      'PB_UNKNOWN_SCENARIO',
      `scenario file ${ref}: use .json, .js, .mjs or .ts`,
    );
  }
  if (!existsSync(path)) {
    throw new PushbenchError('PB_UNKNOWN_SCENARIO', `scenario file ${ref} does not exist`);
  }
  registerSelfResolution();
  let mod: Record<string, unknown>;
  try {
    if (ext === '.ts' || ext === '.mts') {
      // tsx compiles the file on the fly, so a .ts scenario needs no build step.
      const { tsImport } = await import('tsx/esm/api');
      mod = (await tsImport(pathToFileURL(path).href, import.meta.url)) as Record<string, unknown>;
    } else {
      mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    }
  } catch (err) {
    throw new PushbenchError(
      'PB_BAD_SCENARIO',
      `scenario file ${ref} failed to load: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  let value = mod.default ?? mod.scenario;
  // A .ts file outside an ES-module package is compiled as CommonJS: its
  // `export default` arrives as `module.exports.default`.
  if (isRecord(value) && !('name' in value) && isRecord(value.default)) value = value.default;
  if (value === undefined) {
    throw new PushbenchError(
      'PB_BAD_SCENARIO',
      `scenario file ${ref} must export default defineScenario({...})`,
    );
  }
  return value;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

let selfResolution = false;

/**
 * Lets scenario files anywhere `import { defineScenario } from 'pushbench'`:
 * where Node cannot resolve `pushbench` from the file's folder (it is not
 * installed there), a resolve hook answers with define.ts, the part of the
 * API a scenario needs (it has no runtime imports, so it loads the same as
 * ES module or CommonJS). The hook
 * is a data: URL so it needs no file of its own, and keeps the parent's query
 * (tsx's namespace) so TypeScript sources stay compiled on the fly.
 */
function registerSelfResolution(): void {
  if (selfResolution) return;
  selfResolution = true;
  const here = dirname(fileURLToPath(import.meta.url));
  const index = [join(here, 'define.js'), join(here, 'define.ts')].find((f) => existsSync(f));
  if (!index) return;
  const hook = `
    const self = ${JSON.stringify(pathToFileURL(index).href)};
    export async function resolve(specifier, context, next) {
      if (specifier !== 'pushbench') return next(specifier, context);
      try {
        return await next(specifier, context);
      } catch (err) {
        if (err && err.code !== 'ERR_MODULE_NOT_FOUND') throw err;
        const query = context.parentURL ? new URL(context.parentURL).search : '';
        return { url: self + query, shortCircuit: true };
      }
    }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`);
  // A .ts file outside an ES-module package is compiled to CommonJS, whose
  // require() does not consult ESM hooks (Node 20): answer it the same way.
  const cjs = Module as unknown as {
    _resolveFilename: (request: string, ...rest: unknown[]) => string;
  };
  const original = cjs._resolveFilename;
  cjs._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]) {
    try {
      return original.call(this, request, ...rest);
    } catch (err) {
      if (request === 'pushbench') return index;
      throw err;
    }
  };
}

function applyOverrides(input: unknown, o: ScenarioOverrides): unknown {
  if (typeof input !== 'object' || input === null) return input;
  // Work on a copy: a built-in's object must stay as shipped for the next run.
  const s = structuredClone(input) as Record<string, Record<string, unknown> | unknown>;
  const sub = (key: string): Record<string, unknown> => {
    const v = s[key];
    if (typeof v === 'object' && v !== null) return v as Record<string, unknown>;
    const created: Record<string, unknown> = {};
    s[key] = created;
    return created;
  };
  if (o.devices !== undefined) sub('devices').count = o.devices;
  if (o.connectRate !== undefined) sub('devices').connectRate = o.connectRate;
  if (o.rate !== undefined) {
    const traffic = sub('traffic');
    const direct = (traffic.direct ?? {}) as Record<string, unknown>;
    traffic.direct = { ...direct, rate: o.rate };
  }
  if (o.duration !== undefined) s.duration = o.duration;
  if (o.workers !== undefined) s.workers = o.workers;
  if (o.seed !== undefined) s.seed = o.seed;
  if (o.gates && o.gates.length > 0) {
    const own = Array.isArray(s.gates) ? (s.gates as unknown[]) : [];
    s.gates = [...own, ...o.gates];
  }
  for (const [path, value] of Object.entries(o.set ?? {}))
    setPath(s as Record<string, unknown>, path, value);
  return s;
}

/**
 * Resolves a scenario reference (a built-in name, or a path to a .json/.js/.ts
 * file, or an inline {@link ScenarioInput}), applies overrides and validates it.
 */
export async function loadScenario(
  ref: string | ScenarioInput,
  overrides: ScenarioOverrides = {},
): Promise<Scenario> {
  let input: unknown;
  if (typeof ref !== 'string') {
    input = ref;
  } else if (Object.hasOwn(builtinScenarios, ref)) {
    input = builtinScenarios[ref];
  } else if (looksLikePath(ref)) {
    input = await loadFile(ref);
  } else {
    const known = Object.keys(builtinScenarios).join(', ');
    throw new PushbenchError(
      'PB_UNKNOWN_SCENARIO',
      `unknown scenario "${ref}"; built-ins: ${known} (or give a path to a .json/.js/.ts file)`,
    );
  }
  return validateScenario(applyOverrides(input, overrides), { cores: availableParallelism() });
}

/** One axis of a matrix: a field path (or alias) and the values to try. */
export interface MatrixAxis {
  field: string;
  values: unknown[];
}

/** Parses `--matrix field=a,b,c`. */
export function parseMatrixAxis(text: string): MatrixAxis {
  const eq = text.indexOf('=');
  if (eq <= 0)
    throw new PushbenchError('PB_USAGE', `--matrix needs field=value1,value2, got "${text}"`);
  const field = text.slice(0, eq).trim();
  parseFieldPath(field);
  const values = text
    .slice(eq + 1)
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
  if (values.length < 2) {
    throw new PushbenchError(
      'PB_USAGE',
      `--matrix ${field} needs at least two values, got "${text.slice(eq + 1)}"`,
    );
  }
  return { field, values: values.map(parseFieldValue) };
}
