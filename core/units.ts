import { PushbenchError } from './errors.js';

const durationUnitsMs: Record<string, number> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a duration such as `"30s"`, `"1.5m"`, `"250ms"` or a bare number of
 * milliseconds into milliseconds. Throws `PB_BAD_DURATION` on anything else.
 */
export function parseDurationMs(input: string | number, what = 'duration'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) {
      throw new PushbenchError('PB_BAD_DURATION', `${what}: ${input} is not a duration >= 0`);
    }
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?\s*$/.exec(input);
  if (!m) {
    throw new PushbenchError(
      'PB_BAD_DURATION',
      `${what}: "${input}" is not a duration; write e.g. 500ms, 20s, 5m, 1h`,
    );
  }
  const scale = durationUnitsMs[m[2] ?? 'ms'] ?? 1;
  return Number(m[1]) * scale;
}

/** Formats milliseconds for humans: `850us`, `12.3ms`, `4.2s`, `3m05s`. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1) return `${Math.round(ms * 1000)}us`;
  if (ms < 100) return `${ms.toFixed(ms < 10 ? 2 : 1)}ms`;
  if (ms < 10_000) return `${Math.round(ms)}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** Formats a count with thousands separators: `299,572`. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
