/** How unevenly connections spread over nodes: max/mean of per-node counts at each sample. */
export interface SkewSummary {
  /** Worst sample, or null without samples. */
  max: number | null;
  /** Last sample with connections before the fleet closed, or null. */
  final: number | null;
  /** Nodes seen in the samples. */
  nodes: string[];
}

/** Skew of one sample: the fullest node over the mean; null when nothing is connected. */
export function skewOf(counts: Record<string, number>): number | null {
  const values = Object.values(counts);
  if (values.length === 0) return null;
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return mean > 0 ? Math.max(...values) / mean : null;
}

/**
 * Summarises skew over a timeline's node samples. Samples taken while the
 * fleet closes (phase `closing`/`done`) are left out: devices leaving say
 * nothing about how the balancer spread them.
 */
export function summarizeSkew(
  timeline: readonly { nodes?: Record<string, number>; phase?: string }[],
): SkewSummary {
  let max: number | null = null;
  let final: number | null = null;
  const nodes = new Set<string>();
  for (const point of timeline) {
    if (!point.nodes || point.phase === 'closing' || point.phase === 'done') continue;
    for (const n of Object.keys(point.nodes)) nodes.add(n);
    const skew = skewOf(point.nodes);
    if (skew === null) continue;
    max = max === null ? skew : Math.max(max, skew);
    final = skew;
  }
  const round = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { max: round(max), final: round(final), nodes: [...nodes].sort() };
}
