/**
 * How gate numbers read: thresholds as the user most likely wrote them, measured values
 * with the precision that tells them apart from the threshold.
 */

import { formatMs } from '../../core/units.js';
import type { GateKind } from './types.js';

/** `x` with binary noise rounded away: 0.9990000000000001 from `99.9 / 100` becomes 0.999. */
export function clean(x: number): number {
  return Number(x.toPrecision(12));
}

/**
 * A fraction as a percentage with `significant` digits of its distance from 0% or 100%,
 * so 0.99998 reads `99.998%`, not `100.0%`.
 */
export function formatPercent(fraction: number, significant = 2): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const pct = fraction * 100;
  const edge = Math.min(Math.abs(pct), Math.abs(100 - pct));
  const decimals =
    edge === 0 ? 0 : Math.min(10, Math.max(0, Math.ceil(-Math.log10(edge)) + significant - 1));
  const fixed = pct.toFixed(decimals);
  return `${fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed}%`;
}

/** A duration threshold as the user most likely wrote it: `50ms`, `1s`, `250us`. */
function formatThresholdMs(ms: number): string {
  if (ms > 0 && ms < 1) return `${clean(ms * 1000)}us`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${clean(ms)}ms`;
}

/** A value of a metric of `kind`, as a threshold or as a measured value. */
export function formatValue(kind: GateKind, value: number, forThreshold: boolean): string {
  if (kind === 'percent') return formatPercent(value);
  if (kind === 'ratio') return forThreshold ? String(clean(value)) : value.toFixed(2);
  if (kind === 'count') return String(clean(value));
  return forThreshold ? formatThresholdMs(value) : formatMs(value);
}
