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

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
};

/** Parses `"256MiB"`, `"1.5GB"`, `"64kb"` or a number of bytes; throws `PB_USAGE` naming `what`. */
export function parseBytes(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return Math.round(input);
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(input);
    const unit = BYTE_UNITS[(m?.[2] ?? '').toLowerCase()];
    if (m?.[1] && unit !== undefined) return Math.round(Number(m[1]) * unit);
  }
  throw new PushbenchError(
    'PB_USAGE',
    `${what}: expected a size like "256MiB", "1GB" or a number of bytes, got ${JSON.stringify(input)}`,
  );
}

/** Formats bytes with a binary unit: `512 B`, `3.2 KiB`, `256 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}
