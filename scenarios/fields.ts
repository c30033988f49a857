/**
 * The small parts every section validator is made of: a problem list, readers
 * that record a problem and return a usable value (so validation goes on and
 * every problem is reported in one pass), and the vocabulary of the sections'
 * defaults tables.
 */
import { parseDurationMs } from '../core/units.js';
import type { DurationInput } from './types.js';

/** Collects problems as `path: what is wrong` lines. */
export class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

/** A defaults-table entry for a field that has no default: the scenario must give it. */
export const REQUIRED = undefined;
/** A defaults-table entry for a field that is off (none, unlimited) unless the scenario gives it. */
export const OFF = null;

/** A defaults-table entry whose default is worked out from other fields; `how` says from what. */
export interface Computed {
  readonly computed: string;
}

/** Marks a default worked out from other fields, saying from what (as docs/scenarios.md does). */
export function computed(how: string): Computed {
  return { computed: how };
}

/** What a defaults table may hold for a field of type `V`. */
type Entry<V> =
  | typeof REQUIRED
  | typeof OFF
  | Computed
  | (V extends readonly (infer E)[] ? readonly E[] : V extends object ? Defaults<V> : V);

/**
 * A section's defaults table: one entry per field a scenario may write, and
 * no other, in the order error messages list them. An entry is the default in
 * the scenario's own notation (`'10s'`, `1000`, `'round-robin'`), a nested
 * table for an object field whose default is its own defaults, {@link REQUIRED},
 * {@link OFF} or {@link computed}. The validator accepts exactly a table's keys
 * ({@link checkKeys}), so a field added to an `…Input` type fails to compile
 * until its table has it, and is then accepted.
 */
export type Defaults<T> = { readonly [K in keyof Required<T>]: Entry<Exclude<T[K], undefined>> };

/** A plain object (not null, not a list). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Records `<path>.<key>: unknown field` for each key of `obj` that `table` (a defaults table) lacks. */
export function checkKeys(
  p: Problems,
  path: string,
  obj: Record<string, unknown>,
  table: object,
): void {
  const allowed = Object.keys(table);
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      p.add(path ? `${path}.${key}` : key, `unknown field (known: ${allowed.join(', ')})`);
    }
  }
}

/** An object field's value, or `{}` when absent; records `must be an object` for anything else. */
export function section(p: Problems, path: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isRecord(v)) {
    p.add(path, 'must be an object');
    return {};
  }
  return v;
}

/** What a number must be: at least `min`, a whole number, at most `max`. */
export interface Rule {
  min: number;
  integer?: boolean;
  max?: number;
}

/** A boolean field: `true` or `false` (a `--set` gives the strings, which count too). */
export function flag(p: Problems, path: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  p.add(path, `must be true or false, got ${JSON.stringify(v)}`);
  return fallback;
}

/** Reads a number; `fallback` is used when `v` is absent (undefined: it is required) or bad. */
export function num(
  p: Problems,
  path: string,
  v: unknown,
  fallback: number | undefined,
  rule: Rule,
): number {
  if (v === undefined) {
    if (fallback === undefined) p.add(path, 'is required');
    return fallback ?? 0;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    p.add(path, `must be a number, got ${JSON.stringify(v)}`);
    return fallback ?? 0;
  }
  if (rule.integer && !Number.isInteger(v)) p.add(path, `must be a whole number, got ${v}`);
  if (v < rule.min) p.add(path, `must be >= ${rule.min}, got ${v}`);
  if (rule.max !== undefined && v > rule.max) p.add(path, `must be <= ${rule.max}, got ${v}`);
  return v;
}

/**
 * Reads a count, or a percentage of `of` written `"P%"` (P > 0), rounded and at
 * least 1. Returns the count and, for a percentage, P.
 */
export function countOrPercent(
  p: Problems,
  path: string,
  v: unknown,
  fallback: number | undefined,
  of: number,
  rule: Rule,
): { count: number; percent: number | null } {
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)%$/.exec(v.trim());
    const percent = m ? Number(m[1]) : Number.NaN;
    if (!(percent > 0)) {
      p.add(path, `must be a whole number or a percentage like "100%", got ${JSON.stringify(v)}`);
      return { count: fallback ?? 0, percent: null };
    }
    return { count: Math.max(1, Math.round((of * percent) / 100)), percent };
  }
  return { count: num(p, path, v, fallback, rule), percent: null };
}

/** Milliseconds of a duration written in a defaults table (`'10s'`); a table's own entries always parse. */
export function ms(d: DurationInput): number {
  return parseDurationMs(d, 'default');
}

/** Reads a duration in ms; `fallback` (used when `v` is absent or bad) is in scenario notation. */
export function duration(
  p: Problems,
  path: string,
  v: unknown,
  fallback: DurationInput | undefined,
  minMs = 0,
): number {
  const fallbackMs = fallback === undefined ? 0 : ms(fallback);
  if (v === undefined) {
    if (fallback === undefined) p.add(path, 'is required');
    return fallbackMs;
  }
  if (typeof v !== 'string' && typeof v !== 'number') {
    p.add(path, `must be a duration like "20s", got ${JSON.stringify(v)}`);
    return fallbackMs;
  }
  try {
    const valueMs = parseDurationMs(v, path);
    if (valueMs < minMs) p.add(path, `must be at least ${minMs}ms, got ${JSON.stringify(v)}`);
    return valueMs;
  } catch {
    p.add(path, `must be a duration like "20s" or a number of ms, got ${JSON.stringify(v)}`);
    return fallbackMs;
  }
}
