/**
 * The `timeline` section: actions at times (faults, scaling, more devices),
 * validated against the topology in time order.
 */
import {
  checkKeys,
  computed,
  countOrPercent,
  type Defaults,
  duration,
  isRecord,
  num,
  OFF,
  type Problems,
  REQUIRED,
  type Rule,
} from '../fields.js';
import {
  DATASTORE_LINKS,
  type DatastoreLinkName,
  type DurationInput,
  type FaultScope,
  type PartitionPeer,
  type RegionTopology,
  TIMELINE_ACTIONS,
  TIMELINE_ANCHORS,
  type TimelineAction,
  type TimelineActionInput,
  type TimelineActionName,
  type TimelineAnchor,
} from '../types.js';
import { nodeId, nodeNumber } from './topology.js';

type ActionTable = Partial<Defaults<TimelineActionInput>>;

/** Defaults of the fields every action has. */
export const actionDefaults = {
  at: REQUIRED,
  after: 'start',
  action: REQUIRED,
  label: computed('the action and its target'),
} as const satisfies ActionTable;

/** A fault's target: exactly one of `node` and `region`, so neither is required alone. */
const target = { region: OFF, node: OFF } as const;

/** Defaults of each action's own fields, besides `at`, `action` and `label`. */
export const actionFieldDefaults = {
  'kill-node': { node: REQUIRED },
  'restart-node': { node: REQUIRED },
  'stop-node': { node: REQUIRED },
  'scale-up': { region: REQUIRED, nodes: REQUIRED },
  'scale-down': { region: REQUIRED, nodes: REQUIRED, graceful: true },
  latency: { ...target, delay: REQUIRED, jitter: 0, for: OFF },
  blackhole: { ...target, for: OFF },
  heal: { ...target },
  reset: { ...target },
  'conntrack-limit': { ...target, table: REQUIRED, for: OFF },
  'admission-rate': {
    ...target,
    rate: REQUIRED,
    burst: computed('max(1, ceil(rate))'),
    for: OFF,
  },
  bandwidth: { ...target, bandwidth: REQUIRED, for: OFF },
  partition: { ...target, from: REQUIRED, for: OFF },
  'datastore-latency': { node: OFF, link: 'both', delay: REQUIRED, jitter: 0, for: OFF },
  'datastore-down': {},
  'datastore-restart': { data: 'empty' },
  connect: { devices: REQUIRED, rate: 1000 },
} as const satisfies { [A in TimelineActionName]: ActionTable };

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
  managedRedis: { appendonly: boolean } | null = null,
  /** Whether nodes reach their registry and broker over a link (Redis, or a hub). */
  sharedDatastore = true,
  /** Whether the datastore is Redis (managed or by URL), where registry and broker links part. */
  redis = managedRedis !== null,
  run: {
    /**
     * About when the initial ramp resolves (`devices.count / connectRate`):
     * orders actions `after: "ramp"` among the others for the checks below. The
     * run itself starts them from the moment it did resolve.
     */
    rampMs: number;
    /** How long publishing lasts (`duration`): an action `after: "ramp"` at or past it never fires. */
    publishMs: number;
    /** `devices.count`: what a `connect` action's `devices: "P%"` is of. */
    count?: number;
    /** `devices.connectRate`: what a `connect` action's `rate: "P%"` is of. */
    connectRateHz?: number;
  } = { rampMs: 0, publishMs: Number.POSITIVE_INFINITY },
): TimelineAction[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) {
    p.add(
      'timeline',
      'must be a list of actions like {"at": "10s", "action": "kill-node", "node": "local-1"}',
    );
    return [];
  }
  // Every `at` is read first, in file order, to sort by.
  const ats = input.map((v, i) =>
    isRecord(v) ? duration(p, `timeline[${i}].at`, v.at, actionDefaults.at) : 0,
  );
  const anchors = input.map((v, i) =>
    isRecord(v) ? readAnchor(p, `timeline[${i}].after`, v.after) : 'start',
  );
  const sortAt = (i: number) => (ats[i] ?? 0) + (anchors[i] === 'ramp' ? run.rampMs : 0);
  anchors.forEach((anchor, i) => {
    if (anchor === 'ramp' && (ats[i] ?? 0) >= run.publishMs) {
      p.add(
        `timeline[${i}].at`,
        `${ats[i]}ms after the ramp is not before the end of publishing (duration ${run.publishMs}ms): it would never fire`,
      );
    }
  });
  const order = input
    .map((v, i) => ({ v, i }))
    .sort((a, b) => sortAt(a.i) - sortAt(b.i) || a.i - b.i);
  const nodes = new NodeBook(regions);
  const out: TimelineAction[] = [];
  let datastoreDown = false;
  for (const { v, i } of order) {
    const read = readAction(
      p,
      `timeline[${i}]`,
      v,
      ats[i] ?? 0,
      nodes,
      run.count ?? 0,
      run.connectRateHz ?? 0,
    );
    if (!read) continue;
    const action: TimelineAction = anchors[i] === 'ramp' ? { ...read, after: 'ramp' } : read;
    out.push(action);
    if (action.action === 'datastore-latency' && !sharedDatastore) {
      p.add(
        `timeline[${i}]`,
        'datastore-latency needs a datastore across a link: more than one node, or topology.redis (one node keeps its registry and broker in its own process)',
      );
    } else if (action.action === 'datastore-latency' && action.link !== 'both' && !redis) {
      p.add(
        `timeline[${i}].link`,
        `"${action.link}" needs topology.redis (the hub carries registry and broker on one connection)`,
      );
    }
    // The datastore actions kill and start only a Redis pushbench owns; any other shared
    // datastore (Redis by URL, the hub) goes down by its links being cut. In turn.
    if (action.action === 'datastore-down' || action.action === 'datastore-restart') {
      const path = `timeline[${i}]`;
      if (managedRedis === null && !sharedDatastore) {
        p.add(
          path,
          `${action.action} needs a datastore across a link: topology.redis, or more than one node (one node keeps its registry and broker in its own process)`,
        );
      } else if (action.action === 'datastore-down') {
        if (datastoreDown) p.add(path, 'the datastore is already down at that time');
        datastoreDown = true;
      } else if (managedRedis === null) {
        if (!datastoreDown) p.add(path, 'the datastore is not down at that time');
        if (isRecord(v) && v.data !== undefined) {
          p.add(
            `${path}.data`,
            'only a managed Redis restarts empty or kept; a Redis by URL or the hub keeps its data, and its links are restored',
          );
        }
        if (!(isRecord(v) && v.label !== undefined)) action.label = 'datastore links restored';
        datastoreDown = false;
      } else {
        if (!datastoreDown) p.add(path, 'the datastore is not down at that time');
        if (action.data === 'kept' && !managedRedis.appendonly) {
          p.add(
            `${path}.data`,
            '"kept" needs topology.redis "managed:appendonly" (without persistence a restarted Redis is empty)',
          );
        }
        datastoreDown = false;
      }
    }
  }
  return out;
}

/** The nodes the timeline has made so far, and since when each is down. */
class NodeBook {
  readonly known = new Set<string>();
  /** Nodes killed, stopped or scaled down, with when. */
  readonly down = new Map<string, number>();
  readonly regionNames: string[];
  private readonly nextNode = new Map<string, number>();

  constructor(regions: RegionTopology[]) {
    for (const r of regions) {
      for (let n = 1; n <= r.nodes; n++) this.known.add(nodeId(r.name, n));
      this.nextNode.set(r.name, r.nodes + 1);
    }
    this.regionNames = regions.map((r) => r.name);
  }

  /** Adds `count` nodes to a region, numbered after every node it ever had. */
  add(region: string, count: number): void {
    const first = this.nextNode.get(region) ?? 1;
    for (let n = first; n < first + count; n++) this.known.add(nodeId(region, n));
    this.nextNode.set(region, first + count);
  }

  /** The running nodes of a region, lowest number first. */
  running(region: string): string[] {
    return [...this.known]
      .filter((id) => id.startsWith(`${region}-`) && !this.down.has(id))
      .sort((a, b) => nodeNumber(a) - nodeNumber(b));
  }
}

/** One action's fields as written, with readers that record problems under its path. */
class ActionFields {
  constructor(
    readonly p: Problems,
    readonly path: string,
    readonly v: Record<string, unknown>,
    readonly atMs: number,
    readonly nodes: NodeBook,
    /** `devices.count`. */
    readonly fleet: number,
    /** `devices.connectRate`. */
    readonly connectRateHz: number,
  ) {}

  num(key: keyof TimelineActionInput, fallback: number | undefined, rule: Rule): number {
    return num(this.p, `${this.path}.${key}`, this.v[key], fallback, rule);
  }

  /** A count, or `"P%"` of `of` (scenarios/fields.ts). */
  countOrPercent(
    key: keyof TimelineActionInput,
    fallback: number | undefined,
    of: number,
    rule: Rule,
  ): number {
    return countOrPercent(this.p, `${this.path}.${key}`, this.v[key], fallback, of, rule).count;
  }

  duration(key: keyof TimelineActionInput, fallback: DurationInput | undefined, minMs = 0): number {
    return duration(this.p, `${this.path}.${key}`, this.v[key], fallback, minMs);
  }

  forMs(): number | null {
    return this.v.for === undefined ? null : this.duration('for', REQUIRED, 1);
  }

  label(text: string): string {
    return typeof this.v.label === 'string' ? this.v.label : text;
  }

  node(): string {
    const { v, nodes } = this;
    if (typeof v.node !== 'string' || !nodes.known.has(v.node)) {
      this.p.add(
        `${this.path}.node`,
        `no node ${JSON.stringify(v.node)} at ${this.atMs}ms (nodes: ${[...nodes.known].join(', ')})`,
      );
      return '';
    }
    return v.node;
  }

  region(): string {
    const { v, nodes } = this;
    if (typeof v.region !== 'string' || !nodes.regionNames.includes(v.region)) {
      this.p.add(
        `${this.path}.region`,
        `no region ${JSON.stringify(v.region)} (regions: ${nodes.regionNames.join(', ')})`,
      );
      return '';
    }
    return v.region;
  }

  scope(): FaultScope {
    if ((this.v.node === undefined) === (this.v.region === undefined)) {
      this.p.add(this.path, 'needs exactly one of node or region');
      return { region: '' };
    }
    return this.v.node !== undefined ? { nodeId: this.node() } : { region: this.region() };
  }
}

function isActionName(v: unknown): v is TimelineActionName {
  return (TIMELINE_ACTIONS as readonly unknown[]).includes(v);
}

function scopeLabel(s: FaultScope): string {
  return 'nodeId' in s ? s.nodeId : `region ${s.region}`;
}

/** A partition's `from`: `"datastore"`, `"peers"`, or a region other than the scope's own. */
function partitionPeer(f: ActionFields, scope: FaultScope): PartitionPeer {
  const { v, nodes, p, path } = f;
  if (v.from === 'datastore' || v.from === 'peers') {
    if (nodes.regionNames.includes(v.from)) {
      p.add(`${path}.from`, `"${v.from}" names both the ${v.from} and a region: rename the region`);
    }
    return { kind: v.from };
  }
  if (typeof v.from !== 'string' || !nodes.regionNames.includes(v.from)) {
    p.add(
      `${path}.from`,
      `must be "datastore", "peers" or a region (${nodes.regionNames.join(', ')}), got ${JSON.stringify(v.from)}`,
    );
    return { kind: 'datastore' };
  }
  const own =
    'region' in scope ? scope.region : scope.nodeId.slice(0, scope.nodeId.lastIndexOf('-'));
  if (own === v.from) {
    p.add(
      `${path}.from`,
      `${JSON.stringify(v.from)} is the scope's own region: to cut nodes from the others of their region, use "peers"`,
    );
  }
  return { kind: 'region', region: v.from };
}

function readAnchor(p: Problems, path: string, v: unknown): TimelineAnchor {
  if (v === undefined) return actionDefaults.after;
  if (TIMELINE_ANCHORS.includes(v as TimelineAnchor)) return v as TimelineAnchor;
  p.add(path, `must be one of ${TIMELINE_ANCHORS.join(', ')}, got ${JSON.stringify(v)}`);
  return actionDefaults.after;
}

function readAction(
  p: Problems,
  path: string,
  v: unknown,
  atMs: number,
  nodes: NodeBook,
  fleet: number,
  connectRateHz: number,
): TimelineAction | undefined {
  if (!isRecord(v)) {
    p.add(path, 'must be an object');
    return undefined;
  }
  const action = v.action;
  if (!isActionName(action)) {
    p.add(
      `${path}.action`,
      `must be one of ${TIMELINE_ACTIONS.join(', ')}, got ${JSON.stringify(action)}`,
    );
    return undefined;
  }
  checkKeys(p, path, v, { ...actionDefaults, ...actionFieldDefaults[action] });
  const f = new ActionFields(p, path, v, atMs, nodes, fleet, connectRateHz);
  switch (action) {
    case 'kill-node':
    case 'restart-node':
    case 'stop-node':
      return nodeAction(f, action);
    case 'scale-up':
      return scaleUp(f);
    case 'scale-down':
      return scaleDown(f);
    case 'latency':
      return latency(f);
    case 'blackhole': {
      const scope = f.scope();
      const label = f.label(`blackhole ${scopeLabel(scope)}`);
      return { atMs, action, scope, forMs: f.forMs(), label };
    }
    case 'heal':
    case 'reset': {
      const scope = f.scope();
      return { atMs, action, scope, label: f.label(`${action} ${scopeLabel(scope)}`) };
    }
    case 'conntrack-limit':
      return conntrackLimit(f);
    case 'admission-rate':
      return admissionRate(f);
    case 'bandwidth':
      return bandwidth(f);
    case 'partition': {
      const scope = f.scope();
      const from = partitionPeer(f, scope);
      const label = f.label(
        `partition ${scopeLabel(scope)} from ${from.kind === 'region' ? `region ${from.region}` : from.kind}`,
      );
      return { atMs, action, scope, from, forMs: f.forMs(), label };
    }
    case 'datastore-latency': {
      const d = actionFieldDefaults['datastore-latency'];
      const nodeId = f.v.node === undefined ? null : f.node();
      const delayMs = f.duration('delay', d.delay);
      const jitterMs = f.duration('jitter', d.jitter);
      let link: DatastoreLinkName = d.link;
      if (f.v.link !== undefined) {
        if ((DATASTORE_LINKS as readonly unknown[]).includes(f.v.link)) {
          link = f.v.link as DatastoreLinkName;
        } else {
          f.p.add(
            `${f.path}.link`,
            `must be one of ${DATASTORE_LINKS.join(', ')}, got ${JSON.stringify(f.v.link)}`,
          );
        }
      }
      const what = link === 'both' ? '' : ` ${link}`;
      const label = f.label(`datastore${what} latency +${delayMs}ms ${nodeId ?? 'every node'}`);
      return { atMs, action, nodeId, link, delayMs, jitterMs, forMs: f.forMs(), label };
    }
    case 'datastore-down':
      return { atMs, action, label: f.label('datastore down') };
    case 'datastore-restart': {
      let data: 'empty' | 'kept' = 'empty';
      if (f.v.data !== undefined) {
        if (f.v.data === 'empty' || f.v.data === 'kept') data = f.v.data;
        else
          f.p.add(`${f.path}.data`, `must be one of empty, kept, got ${JSON.stringify(f.v.data)}`);
      }
      return { atMs, action, data, label: f.label(`datastore restart (${data})`) };
    }
    case 'connect': {
      const d = actionFieldDefaults.connect;
      const devices = f.countOrPercent('devices', d.devices, f.fleet, { min: 1, integer: true });
      const rateHz = f.countOrPercent('rate', d.rate, f.connectRateHz, { min: 1 });
      return { atMs, action, devices, rateHz, label: f.label(`connect +${devices}`) };
    }
  }
}

/** kill-node and stop-node need the node running; restart-node needs it down. */
function nodeAction(
  f: ActionFields,
  action: 'kill-node' | 'restart-node' | 'stop-node',
): TimelineAction {
  const { atMs, nodes } = f;
  const node = f.node();
  if (node !== '') {
    const stoppedAt = nodes.down.get(node);
    if (action === 'restart-node') {
      if (stoppedAt === undefined)
        f.p.add(`${f.path}.node`, `${node} is still running at ${atMs}ms`);
      nodes.down.delete(node);
    } else if (stoppedAt !== undefined) {
      f.p.add(
        `${f.path}.node`,
        `${node} is not running at ${atMs}ms (it went down at ${stoppedAt}ms)`,
      );
    } else {
      nodes.down.set(node, atMs);
    }
  }
  return { atMs, action, node, label: f.label(`${action} ${node}`) };
}

const NODES = { min: 1, integer: true, max: 64 };

function scaleUp(f: ActionFields): TimelineAction {
  const region = f.region();
  const nodes = f.num('nodes', actionFieldDefaults['scale-up'].nodes, NODES);
  f.nodes.add(region, nodes);
  const label = f.label(`scale-up ${region} +${nodes}`);
  return { atMs: f.atMs, action: 'scale-up', region, nodes, label };
}

/** Removes the highest-numbered running nodes of the region, as the cluster will. */
function scaleDown(f: ActionFields): TimelineAction {
  const d = actionFieldDefaults['scale-down'];
  const region = f.region();
  const nodes = f.num('nodes', d.nodes, NODES);
  if (f.v.graceful !== undefined && typeof f.v.graceful !== 'boolean') {
    f.p.add(`${f.path}.graceful`, 'must be true or false');
  }
  const graceful = typeof f.v.graceful === 'boolean' ? f.v.graceful : d.graceful;
  const running = f.nodes.running(region);
  if (region !== '' && running.length < nodes) {
    f.p.add(
      `${f.path}.nodes`,
      `only ${running.length} nodes of ${region} are running at ${f.atMs}ms, got ${nodes}`,
    );
  }
  for (const id of running.slice(-nodes)) f.nodes.down.set(id, f.atMs);
  const label = f.label(`scale-down ${region} -${nodes} (${graceful ? 'drain' : 'kill'})`);
  return { atMs: f.atMs, action: 'scale-down', region, nodes, graceful, label };
}

function latency(f: ActionFields): TimelineAction {
  const d = actionFieldDefaults.latency;
  const scope = f.scope();
  const delayMs = f.duration('delay', d.delay);
  const jitterMs = f.duration('jitter', d.jitter);
  const forMs = f.forMs();
  const label = f.label(`latency +${delayMs}ms ${scopeLabel(scope)}`);
  return { atMs: f.atMs, action: 'latency', scope, delayMs, jitterMs, forMs, label };
}

function conntrackLimit(f: ActionFields): TimelineAction {
  const scope = f.scope();
  const table = f.num('table', actionFieldDefaults['conntrack-limit'].table, {
    min: 0,
    integer: true,
  });
  const forMs = f.forMs();
  const label = f.label(`conntrack ${table} ${scopeLabel(scope)}`);
  return { atMs: f.atMs, action: 'conntrack-limit', scope, table, forMs, label };
}

const BANDWIDTH = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)$/i;
const BANDWIDTH_UNIT: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };

function bandwidth(f: ActionFields): TimelineAction {
  const scope = f.scope();
  const v = f.v.bandwidth;
  let bitsPerSec = 0;
  const m = typeof v === 'string' ? BANDWIDTH.exec(v.trim()) : null;
  if (typeof v === 'number' && Number.isFinite(v)) bitsPerSec = v;
  else if (m) bitsPerSec = Number(m[1]) * (BANDWIDTH_UNIT[(m[2] as string).toLowerCase()] ?? 1);
  if (!(bitsPerSec >= 8000) || bitsPerSec > 1e11) {
    f.p.add(
      `${f.path}.bandwidth`,
      `must be a rate from 8kbit to 100gbit, e.g. "10mbit" or bits per second (got ${JSON.stringify(v)})`,
    );
    bitsPerSec = 8000;
  }
  const forMs = f.forMs();
  const label = f.label(`bandwidth ${formatBits(bitsPerSec)} ${scopeLabel(scope)}`);
  return { atMs: f.atMs, action: 'bandwidth', scope, bitsPerSec, forMs, label };
}

function formatBits(bits: number): string {
  if (bits >= 1e9) return `${+(bits / 1e9).toFixed(3)}gbit`;
  if (bits >= 1e6) return `${+(bits / 1e6).toFixed(3)}mbit`;
  return `${+(bits / 1e3).toFixed(3)}kbit`;
}

function admissionRate(f: ActionFields): TimelineAction {
  const scope = f.scope();
  const ratePerSec = f.num('rate', actionFieldDefaults['admission-rate'].rate, { min: 0.001 });
  const burst = f.num('burst', Math.max(1, Math.ceil(ratePerSec)), { min: 1 });
  const forMs = f.forMs();
  const label = f.label(`admission ${ratePerSec}/s ${scopeLabel(scope)}`);
  return { atMs: f.atMs, action: 'admission-rate', scope, ratePerSec, burst, forMs, label };
}
