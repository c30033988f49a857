import { checkKeys, duration, isRecord, num, type Problems } from './fields.js';
import type { FaultScope, RegionTopology, TimelineAction } from './schema.js';

const ACTIONS = [
  'kill-node',
  'restart-node',
  'stop-node',
  'scale-up',
  'scale-down',
  'latency',
  'blackhole',
  'heal',
  'reset',
  'conntrack-limit',
  'admission-rate',
  'connect',
] as const;

/** The fields each action accepts besides `at`, `action` and `label`. */
const FIELDS: Record<(typeof ACTIONS)[number], string[]> = {
  'kill-node': ['node'],
  'restart-node': ['node'],
  'stop-node': ['node'],
  'scale-up': ['region', 'nodes'],
  'scale-down': ['region', 'nodes', 'graceful'],
  latency: ['region', 'node', 'delay', 'jitter', 'for'],
  blackhole: ['region', 'node', 'for'],
  heal: ['region', 'node'],
  reset: ['region', 'node'],
  'conntrack-limit': ['region', 'node', 'table', 'for'],
  'admission-rate': ['region', 'node', 'rate', 'burst', 'for'],
  connect: ['devices', 'rate'],
};

/** Node ids of a region: `<region>-1` … `<region>-n`. */
export function nodeId(region: string, n: number): string {
  return `${region}-${n}`;
}

/** The `n` of a node id `<region>-<n>`. */
export function nodeNumber(id: string): number {
  return Number(id.slice(id.lastIndexOf('-') + 1));
}

/**
 * Validates the timeline against the topology, in time order, so a node named
 * by an action exists at that moment (initial nodes and those added by earlier
 * `scale-up`s) and is running for a kill, stop or scale-down (or down, for a
 * restart). Returns actions sorted by time (stable for equal times).
 */
export function validateTimeline(
  p: Problems,
  input: unknown,
  regions: RegionTopology[],
): TimelineAction[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) {
    p.add(
      'timeline',
      'must be a list of actions like {"at": "10s", "action": "kill-node", "node": "local-1"}',
    );
    return [];
  }
  const known = new Set<string>();
  /** Nodes killed, stopped or scaled down, with when. */
  const down = new Map<string, number>();
  const nextNode = new Map<string, number>();
  for (const r of regions) {
    for (let n = 1; n <= r.nodes; n++) known.add(nodeId(r.name, n));
    nextNode.set(r.name, r.nodes + 1);
  }
  const regionNames = regions.map((r) => r.name);
  const indexed = input.map((v, i) => ({ v, i }));
  const atOf = (v: unknown, i: number): number =>
    isRecord(v) ? duration(p, `timeline[${i}].at`, v.at, undefined) : 0;
  const ats = indexed.map(({ v, i }) => atOf(v, i));
  const order = indexed.sort((a, b) => (ats[a.i] ?? 0) - (ats[b.i] ?? 0) || a.i - b.i);
  const out: TimelineAction[] = [];
  for (const { v, i } of order) {
    const path = `timeline[${i}]`;
    if (!isRecord(v)) {
      p.add(path, 'must be an object');
      continue;
    }
    const action = v.action;
    if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action)) {
      p.add(
        `${path}.action`,
        `must be one of ${ACTIONS.join(', ')}, got ${JSON.stringify(action)}`,
      );
      continue;
    }
    const kind = action as (typeof ACTIONS)[number];
    checkKeys(p, path, v, ['at', 'action', 'label', ...FIELDS[kind]]);
    const atMs = ats[i] ?? 0;
    const forMs = (): number | null =>
      v.for === undefined ? null : duration(p, `${path}.for`, v.for, undefined, 1);
    const node = (): string => {
      if (typeof v.node !== 'string' || !known.has(v.node)) {
        p.add(
          `${path}.node`,
          `no node ${JSON.stringify(v.node)} at ${atMs}ms (nodes: ${[...known].join(', ')})`,
        );
        return '';
      }
      return v.node;
    };
    const region = (): string => {
      if (typeof v.region !== 'string' || !regionNames.includes(v.region)) {
        p.add(
          `${path}.region`,
          `no region ${JSON.stringify(v.region)} (regions: ${regionNames.join(', ')})`,
        );
        return '';
      }
      return v.region;
    };
    const scope = (): FaultScope => {
      if ((v.node === undefined) === (v.region === undefined)) {
        p.add(path, 'needs exactly one of node or region');
        return { region: '' };
      }
      return v.node !== undefined ? { nodeId: node() } : { region: region() };
    };
    const scopeLabel = (s: FaultScope) => ('nodeId' in s ? s.nodeId : `region ${s.region}`);
    const label = (text: string) => (typeof v.label === 'string' ? v.label : text);
    switch (kind) {
      case 'kill-node':
      case 'restart-node':
      case 'stop-node': {
        const n = node();
        if (n !== '') {
          const stoppedAt = down.get(n);
          if (kind === 'restart-node') {
            if (stoppedAt === undefined)
              p.add(`${path}.node`, `${n} is still running at ${atMs}ms`);
            down.delete(n);
          } else if (stoppedAt !== undefined) {
            p.add(
              `${path}.node`,
              `${n} is not running at ${atMs}ms (it went down at ${stoppedAt}ms)`,
            );
          } else {
            down.set(n, atMs);
          }
        }
        out.push({ atMs, action: kind, node: n, label: label(`${kind} ${n}`) });
        break;
      }
      case 'scale-up': {
        const r = region();
        const nodes = num(p, `${path}.nodes`, v.nodes, undefined, {
          min: 1,
          integer: true,
          max: 64,
        });
        const first = nextNode.get(r) ?? 1;
        for (let n = first; n < first + nodes; n++) known.add(nodeId(r, n));
        nextNode.set(r, first + nodes);
        out.push({ atMs, action: kind, region: r, nodes, label: label(`scale-up ${r} +${nodes}`) });
        break;
      }
      case 'scale-down': {
        const r = region();
        const nodes = num(p, `${path}.nodes`, v.nodes, undefined, {
          min: 1,
          integer: true,
          max: 64,
        });
        if (v.graceful !== undefined && typeof v.graceful !== 'boolean') {
          p.add(`${path}.graceful`, 'must be true or false');
        }
        const graceful = v.graceful !== false;
        // The cluster removes the highest-numbered running nodes of the region.
        const running = [...known]
          .filter((id) => id.startsWith(`${r}-`) && !down.has(id))
          .sort((a, b) => nodeNumber(a) - nodeNumber(b));
        if (r !== '' && running.length < nodes) {
          p.add(
            `${path}.nodes`,
            `only ${running.length} nodes of ${r} are running at ${atMs}ms, got ${nodes}`,
          );
        }
        for (const id of running.slice(-nodes)) down.set(id, atMs);
        out.push({
          atMs,
          action: kind,
          region: r,
          nodes,
          graceful,
          label: label(`scale-down ${r} -${nodes} (${graceful ? 'drain' : 'kill'})`),
        });
        break;
      }
      case 'latency': {
        const s = scope();
        const delayMs = duration(p, `${path}.delay`, v.delay, undefined);
        const jitterMs = duration(p, `${path}.jitter`, v.jitter, 0);
        out.push({
          atMs,
          action: kind,
          scope: s,
          delayMs,
          jitterMs,
          forMs: forMs(),
          label: label(`latency +${delayMs}ms ${scopeLabel(s)}`),
        });
        break;
      }
      case 'blackhole': {
        const s = scope();
        out.push({
          atMs,
          action: kind,
          scope: s,
          forMs: forMs(),
          label: label(`blackhole ${scopeLabel(s)}`),
        });
        break;
      }
      case 'heal':
      case 'reset': {
        const s = scope();
        out.push({ atMs, action: kind, scope: s, label: label(`${kind} ${scopeLabel(s)}`) });
        break;
      }
      case 'conntrack-limit': {
        const s = scope();
        const table = num(p, `${path}.table`, v.table, undefined, { min: 0, integer: true });
        out.push({
          atMs,
          action: kind,
          scope: s,
          table,
          forMs: forMs(),
          label: label(`conntrack ${table} ${scopeLabel(s)}`),
        });
        break;
      }
      case 'admission-rate': {
        const s = scope();
        const ratePerSec = num(p, `${path}.rate`, v.rate, undefined, { min: 0.001 });
        const burst = num(p, `${path}.burst`, v.burst, Math.max(1, Math.ceil(ratePerSec)), {
          min: 1,
        });
        out.push({
          atMs,
          action: kind,
          scope: s,
          ratePerSec,
          burst,
          forMs: forMs(),
          label: label(`admission ${ratePerSec}/s ${scopeLabel(s)}`),
        });
        break;
      }
      case 'connect': {
        const devices = num(p, `${path}.devices`, v.devices, undefined, { min: 1, integer: true });
        const rateHz = num(p, `${path}.rate`, v.rate, 1000, { min: 1 });
        out.push({ atMs, action: kind, devices, rateHz, label: label(`connect +${devices}`) });
        break;
      }
    }
  }
  return out;
}
