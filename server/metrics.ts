/**
 * A node's counters, gauges and latency histograms, rendered in the Prometheus
 * text format on `GET /metrics` and as JSON on `GET /metrics.json`. Counters
 * are totals since the node started.
 */

type Labels = Readonly<Record<string, string | number>>;

interface Family {
  help: string;
  type: NodeMetricType;
  /** Label set (rendered) -> value. */
  values: Map<string, number>;
}

/** Histogram bucket bounds in seconds: 100 µs .. 10 s. */
const BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
];

function renderLabels(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.entries(labels).map(
    ([k, v]) =>
      `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
  );
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
}

/** A metric's Prometheus type. */
export type NodeMetricType = 'counter' | 'gauge' | 'histogram';

/**
 * Every metric a node exports, in exposition order, with its type and help text. Add a
 * row to add a metric. The name types below are derived from this list, so a name that
 * is not in it, or a counter passed where a gauge belongs, fails to compile.
 */
export const NODE_METRICS = [
  { name: 'pushbench_connections', type: 'gauge', help: 'Devices connected to this node now.' },
  { name: 'pushbench_connects_total', type: 'counter', help: 'Upgrades accepted.' },
  {
    name: 'pushbench_upgrades_refused_total',
    type: 'counter',
    help: 'Upgrades refused, by HTTP status and reason.',
  },
  {
    name: 'pushbench_accept_pauses_total',
    type: 'counter',
    help: 'Times this process of a multi-process node stopped accepting, near its open-file limit.',
  },
  {
    name: 'pushbench_queue_lost_total',
    type: 'counter',
    help: 'Times the shared queue was found gone (Redis came back without its data): every message it held then is lost.',
  },
  {
    name: 'pushbench_registry_rechecks_total',
    type: 'counter',
    help: 'Passes over every connection re-checking its registry entry after the registry came back.',
  },
  {
    name: 'pushbench_disconnects_total',
    type: 'counter',
    help: 'Connections that ended, by reason.',
  },
  {
    name: 'pushbench_messages_total',
    type: 'counter',
    help: 'Messages handled, by path (direct, batch, queue, d2d, room) and outcome.',
  },
  { name: 'pushbench_acks_total', type: 'counter', help: 'Acks received from devices.' },
  { name: 'pushbench_bad_frames_total', type: 'counter', help: 'Device frames refused, by kind.' },
  {
    name: 'pushbench_http_responses_total',
    type: 'counter',
    help: 'HTTP API answers, by status.',
  },
  {
    name: 'pushbench_d2d_cache_total',
    type: 'counter',
    help: 'Device-to-device target lookups, by result (hit, miss).',
  },
  {
    name: 'pushbench_slow_consumer_total',
    type: 'counter',
    help: 'Sends refused because a connection buffer was full, by action (drop, disconnect).',
  },
  {
    name: 'pushbench_queue_depth',
    type: 'gauge',
    help: 'Indirect-push messages waiting or in flight.',
  },
  {
    name: 'pushbench_dead_letters',
    type: 'gauge',
    help: 'Indirect-push messages dead-lettered (kept).',
  },
  {
    name: 'pushbench_event_loop_lag_seconds',
    type: 'gauge',
    help: 'Event-loop delay p99 of this node over the last 10 s.',
  },
  {
    name: 'pushbench_push_write_seconds',
    type: 'histogram',
    help: 'Direct push: request received to frame written, on the holding node.',
  },
  {
    name: 'pushbench_d2d_seconds',
    type: 'histogram',
    help: 'Device-to-device: frame received to d2d_status sent.',
  },
] as const satisfies readonly {
  name: `pushbench_${string}`;
  type: NodeMetricType;
  help: string;
}[];

type NodeMetricRow = (typeof NODE_METRICS)[number];

/** The name of a metric a node exports: one of {@link NODE_METRICS}. */
export type NodeMetricName = NodeMetricRow['name'];

/** The name of one of the node's counters (only these take `inc`). */
export type NodeCounterName = Extract<NodeMetricRow, { type: 'counter' }>['name'];

/** The name of one of the node's gauges (only these take `set`). */
export type NodeGaugeName = Extract<NodeMetricRow, { type: 'gauge' }>['name'];

/** The name of one of the node's histograms (only these take `observe`). */
export type NodeHistogramName = Extract<NodeMetricRow, { type: 'histogram' }>['name'];

/** The metrics of one node. */
export class NodeMetrics {
  private readonly families = new Map<NodeMetricName, Family>();
  private readonly histograms = new Map<
    NodeMetricName,
    { counts: number[]; sum: number; count: number }
  >();

  constructor() {
    for (const { name, type, help } of NODE_METRICS)
      this.families.set(name, { type, help, values: new Map() });
  }

  private family(name: NodeMetricName): Family {
    const f = this.families.get(name);
    if (!f) throw new Error(`unknown metric ${name}`);
    return f;
  }

  /** Adds `by` to a counter. */
  inc(name: NodeCounterName, labels?: Labels, by = 1): void {
    const values = this.family(name).values;
    const key = renderLabels(labels);
    values.set(key, (values.get(key) ?? 0) + by);
  }

  /** Sets a gauge. */
  set(name: NodeGaugeName, value: number, labels?: Labels): void {
    this.family(name).values.set(renderLabels(labels), value);
  }

  /** A counter's or gauge's value for exactly these labels (0 if never set). */
  get(name: NodeCounterName | NodeGaugeName, labels?: Labels): number {
    return this.family(name).values.get(renderLabels(labels)) ?? 0;
  }

  /** Sum of a counter over all its label sets. */
  total(name: NodeCounterName | NodeGaugeName): number {
    let sum = 0;
    for (const v of this.family(name).values.values()) sum += v;
    return sum;
  }

  /** Records one observation, in seconds, in a histogram. */
  observe(name: NodeHistogramName, seconds: number): void {
    this.family(name);
    let h = this.histograms.get(name);
    if (!h) {
      h = { counts: BUCKETS_S.map(() => 0), sum: 0, count: 0 };
      this.histograms.set(name, h);
    }
    for (let i = 0; i < BUCKETS_S.length; i++)
      if (seconds <= (BUCKETS_S[i] ?? 0)) h.counts[i] = (h.counts[i] ?? 0) + 1;
    h.sum += seconds;
    h.count++;
  }

  /** The Prometheus text exposition (format 0.0.4). */
  toPrometheus(constLabels: Labels = {}): string {
    const lines: string[] = [];
    const base = Object.entries(constLabels);
    const withConst = (key: string): string => {
      if (base.length === 0) return key;
      const own = key === '' ? '' : key.slice(1, -1);
      const c = renderLabels(constLabels).slice(1, -1);
      return `{${own ? `${c},${own}` : c}}`;
    };
    for (const [name, f] of this.families) {
      lines.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      if (f.type === 'histogram') {
        const h = this.histograms.get(name) ?? { counts: BUCKETS_S.map(() => 0), sum: 0, count: 0 };
        BUCKETS_S.forEach((le, i) => {
          lines.push(`${name}_bucket${withConst(renderLabels({ le }))} ${h.counts[i] ?? 0}`);
        });
        lines.push(`${name}_bucket${withConst(renderLabels({ le: '+Inf' }))} ${h.count}`);
        lines.push(
          `${name}_sum${withConst('')} ${h.sum}`,
          `${name}_count${withConst('')} ${h.count}`,
        );
        continue;
      }
      if (f.values.size === 0) lines.push(`${name}${withConst('')} 0`);
      for (const [key, v] of f.values) lines.push(`${name}${withConst(key)} ${v}`);
    }
    return `${lines.join('\n')}\n`;
  }

  /** Every family as `{name: {labels: value}}`, for JSON consumers. */
  toJSON(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, f] of this.families) {
      if (f.type === 'histogram') {
        const h = this.histograms.get(name);
        out[name] = { count: h?.count ?? 0, sum: h?.sum ?? 0 };
      } else {
        out[name] = Object.fromEntries(f.values);
      }
    }
    return out;
  }
}
