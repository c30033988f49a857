import { parseDurationMs } from '../core/units.js';

/** A duration as written in a scenario: `"20s"`, `"500ms"`, or a number of milliseconds. */
export type DurationInput = string | number;

/** Collects problems as `path: what is wrong` lines. */
export class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkKeys(
  p: Problems,
  path: string,
  obj: Record<string, unknown>,
  allowed: string[],
): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      p.add(path ? `${path}.${key}` : key, `unknown field (known: ${allowed.join(', ')})`);
    }
  }
}

export function section(p: Problems, path: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isRecord(v)) {
    p.add(path, 'must be an object');
    return {};
  }
  return v;
}

export function num(
  p: Problems,
  path: string,
  v: unknown,
  fallback: number | undefined,
  rule: { min: number; integer?: boolean; max?: number },
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

export function duration(
  p: Problems,
  path: string,
  v: unknown,
  fallback: number | undefined,
  minMs = 0,
): number {
  if (v === undefined) {
    if (fallback === undefined) p.add(path, 'is required');
    return fallback ?? 0;
  }
  if (typeof v !== 'string' && typeof v !== 'number') {
    p.add(path, `must be a duration like "20s", got ${JSON.stringify(v)}`);
    return fallback ?? 0;
  }
  try {
    const ms = parseDurationMs(v, path);
    if (ms < minMs) p.add(path, `must be at least ${minMs}ms, got ${JSON.stringify(v)}`);
    return ms;
  } catch (err) {
    p.add(path, `must be a duration like "20s" or a number of ms, got ${JSON.stringify(v)}`);
    void err;
    return fallback ?? 0;
  }
}
