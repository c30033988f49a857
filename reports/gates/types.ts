/**
 * The shapes gates share: what a run gives them to read ({@link GateInputs}), a parsed
 * gate ({@link Gate}) and an evaluated one ({@link GateResult}). The parser produces
 * gates, the evaluator consumes them; neither needs the other's internals.
 */

import type { LatencySummary } from '../../core/measure/histogram.js';

export type { LatencySummary };

/** The figures of a finished run that gates are evaluated against. */
export interface GateInputs {
  delivery: { accepted: number; delivered: number; lost: number };
  /** Keyed by series name (see `LATENCY_SERIES`); a series with no data may be absent. */
  latency: Partial<Record<string, LatencySummary>>;
  connections: {
    requested: number;
    established: number;
    heldAtEnd: number;
    /** What the nodes themselves counted just before the fleet closed; null when unread. */
    heldAtServer?: number | null;
  };
  /** Per-node connection skew (max/mean over nodes), worst sample and last sample. */
  skew?: { max: number | null; final: number | null };
  /** Reconnect storm figures (reports/storm.ts); times in seconds. */
  storm?: {
    losses: number;
    peakAttemptsPerSec: number;
    attemptsPerDevice: number | null;
    notBack: number;
    lossToBack: { p50: number | null; p99: number | null; p100: number | null };
  };
  /** Per-fault figures by label; times in seconds from the fault. */
  faults?: Array<{
    label: string;
    affected: number;
    peakAttemptsPerSec: number;
    lostMessages: number;
    attemptsPerDevice: number | null;
    reconnected: { p50: number | null; p99: number | null; p100: number | null };
    /** When its devices saw their connections lost, from the fault's start (s). */
    noticed?: { p50: number; p99: number; p100: number };
    skewSettledAfterS?: number | null;
    /** datastore-restart: 404s for pushes after Redis answered again, and until when (s). */
    notFoundAfter?: { count: number; forS: number };
    /** Latency while the fault stood and as long before it, by series (reports/windows.ts). */
    windows?: {
      before: { latency: Record<string, LatencySummary> };
      during: { latency: Record<string, LatencySummary> };
    };
  }>;
  /** Per-region figures: nodes that fell over on their own, skew over the region's nodes. */
  regions?: Record<string, { crashed: number; skew: { max: number | null; final: number | null } }>;
  /** Nodes that fell over on their own during the run. */
  crashed?: number;
  /** Every repeat's inputs, for `median(...)`-style gates of a `--repeat` run. */
  repeats?: GateInputs[];
}

/** A comparison operator a gate may use. */
export type GateOp = '<' | '<=' | '>' | '>=';

/**
 * What a metric's numbers are: `percent` a fraction in [0, 1], `duration` milliseconds,
 * `ratio` and `count` plain numbers. It decides how thresholds parse and values print.
 */
export type GateKind = 'percent' | 'duration' | 'ratio' | 'count';

/** A parsed gate. `threshold` is a fraction for percent metrics and milliseconds for durations. */
export interface Gate {
  expr: string;
  metric: string;
  op: GateOp;
  threshold: number;
  kind: GateKind;
}

/** The outcome of a gate: `inconclusive` when the run cannot tell (too few samples, no data). */
export type GateVerdict = 'pass' | 'fail' | 'inconclusive';

/** One evaluated gate, for reports and the exit code. */
export interface GateResult {
  expr: string;
  metric: string;
  op: GateOp;
  /** As in {@link Gate}: a fraction or milliseconds. */
  threshold: number;
  /** The measured value (fraction or ms), or null when there was nothing to measure. */
  actual: number | null;
  /** `actual` for humans: `99.998%`, `12.3ms`, `n/a`. */
  actualText: string;
  verdict: GateVerdict;
  /** Same as `verdict === 'pass'`. */
  pass: boolean;
  /** One line saying why. */
  detail: string;
  /** For an inconclusive statistical gate: trials needed (with no further failures) to decide. */
  needed?: number;
}
