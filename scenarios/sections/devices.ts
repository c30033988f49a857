/**
 * The `devices` section: how many devices connect, how fast, where they are
 * homed, and how they reconnect.
 */
import {
  checkKeys,
  computed,
  type Defaults,
  duration,
  flag,
  ms,
  num,
  OFF,
  type Problems,
  REQUIRED,
  section,
} from '../fields.js';
import {
  type DeviceBlock,
  type DevicesInput,
  type PeriodicReconnectInput,
  RECONNECT_POLICIES,
  type ReconnectPolicy,
  type ReconnectPolicyName,
  type RegionTopology,
  type Scenario,
  type TimelineAction,
} from '../types.js';

/**
 * Defaults of `devices`. `reconnect` is the policy when the field is omitted;
 * a written one must name its `policy`, and its `cap` defaults to
 * max(this cap, its base).
 */
export const devicesDefaults = {
  count: REQUIRED,
  connectRate: 1000,
  connectTimeout: '10s',
  accounts: 100,
  regions: computed('1 each (an even split)'),
  reconnect: { policy: 'full-jitter', base: '500ms', cap: '10s', maxAttempts: 0 },
  periodicReconnect: OFF,
  heartbeatTimeout: OFF,
  registration: false,
  tlsResume: true,
} as const satisfies Defaults<DevicesInput>;

/** Defaults of `devices.periodicReconnect` when it is given. */
export const periodicReconnectDefaults = {
  every: REQUIRED,
  stagger: 0,
} as const satisfies Defaults<PeriodicReconnectInput>;

/** A region's share of the devices. */
interface Share {
  region: string;
  share: number;
}

/** `devices` validated, before the timeline says how many more devices `connect` actions open. */
export type DevicesDraft = Omit<Scenario['devices'], 'regions' | 'reserve'> & { shares: Share[] };

/** Validates `devices` against the regions of the topology. */
export function validateDevices(
  p: Problems,
  input: unknown,
  regions: RegionTopology[],
): DevicesDraft {
  const dev = section(p, 'devices', input);
  if (input === undefined) p.add('devices', 'is required');
  checkKeys(p, 'devices', dev, devicesDefaults);
  const d = devicesDefaults;
  // A missing section is one problem, not one more for its count.
  const countDefault = input === undefined ? 0 : d.count;
  return {
    count: num(p, 'devices.count', dev.count, countDefault, { min: 1, integer: true }),
    connectRateHz: num(p, 'devices.connectRate', dev.connectRate, d.connectRate, { min: 1 }),
    connectTimeoutMs: duration(
      p,
      'devices.connectTimeout',
      dev.connectTimeout,
      d.connectTimeout,
      1,
    ),
    accounts: num(p, 'devices.accounts', dev.accounts, d.accounts, { min: 1, integer: true }),
    shares: readShares(p, dev.regions, regions),
    reconnect: reconnectPolicy(p, 'devices.reconnect', dev.reconnect),
    periodicReconnect: readPeriodicReconnect(p, dev.periodicReconnect),
    heartbeatTimeoutMs:
      dev.heartbeatTimeout === undefined
        ? d.heartbeatTimeout
        : duration(p, 'devices.heartbeatTimeout', dev.heartbeatTimeout, REQUIRED, 10),
    registration: flag(p, 'devices.registration', dev.registration, d.registration),
    tlsResume: flag(p, 'devices.tlsResume', dev.tlsResume, d.tlsResume),
  };
}

/**
 * The devices with their home regions: the initial `count` split by share,
 * then the devices the timeline's `connect` actions open (indices from
 * `count` on), split the same way.
 */
export function homeDevices(draft: DevicesDraft, timeline: TimelineAction[]): Scenario['devices'] {
  const { count, shares } = draft;
  const reserve = timeline.reduce((a, t) => a + (t.action === 'connect' ? t.devices : 0), 0);
  return {
    count,
    connectRateHz: draft.connectRateHz,
    connectTimeoutMs: draft.connectTimeoutMs,
    accounts: draft.accounts,
    regions: [
      ...interleaveByShare(count, shares),
      ...interleaveByShare(reserve, shares).map((b) => ({ ...b, first: b.first + count })),
    ].filter((b) => b.count > 0),
    reconnect: draft.reconnect,
    periodicReconnect: draft.periodicReconnect,
    heartbeatTimeoutMs: draft.heartbeatTimeoutMs,
    registration: draft.registration,
    tlsResume: draft.tlsResume,
    reserve,
  };
}

/**
 * The same homes numbered region by region: each region's initial devices one
 * contiguous block, in region order, then each region's reserve one block from
 * `count` on. Every region keeps exactly its devices; only the indices move.
 * For fleets whose shards each live in one region's client host (the kernel
 * engine), where a shard must hold one region's devices and nothing else.
 */
export function homeByRegion(devices: Scenario['devices']): Scenario['devices'] {
  const initial = new Map<string, number>();
  const reserve = new Map<string, number>();
  for (const b of devices.regions) {
    const into = b.first < devices.count ? initial : reserve;
    into.set(b.region, (into.get(b.region) ?? 0) + b.count);
    // A region with reserve only still comes in region order.
    if (!initial.has(b.region)) initial.set(b.region, 0);
  }
  const regions: DeviceBlock[] = [];
  let first = 0;
  for (const [region, count] of initial) {
    regions.push({ region, first, count });
    first += count;
  }
  for (const region of initial.keys()) {
    const count = reserve.get(region) ?? 0;
    regions.push({ region, first, count });
    first += count;
  }
  return { ...devices, regions: regions.filter((b) => b.count > 0) };
}

/** Rounds in which several regions' devices take turns (see {@link interleaveByShare}). */
const HOMING_ROUNDS = 32;

/**
 * Homes `count` devices by share like {@link splitByShare}, but with several regions
 * taking turns in up to 32 rounds of blocks, each region's block its share of a round.
 * Any stretch of indices then holds every region in proportion, so the fleet's threads
 * and processes, each a contiguous stretch, carry every region alike: a herd in one
 * region lands on all of them rather than on the one that held that region's block.
 */
export function interleaveByShare(count: number, shares: Share[]): DeviceBlock[] {
  const totals = splitByShare(count, shares)
    .filter((b) => b.count > 0)
    .map((b) => ({ region: b.region, left: b.count, chunk: Math.ceil(b.count / HOMING_ROUNDS) }));
  if (totals.length <= 1) return splitByShare(count, shares);
  const out: DeviceBlock[] = [];
  let first = 0;
  while (totals.some((t) => t.left > 0)) {
    for (const t of totals) {
      const n = Math.min(t.chunk, t.left);
      if (n === 0) continue;
      out.push({ region: t.region, first, count: n });
      first += n;
      t.left -= n;
    }
  }
  return out;
}

/** Splits `count` devices over regions by share, in region order, as contiguous index blocks. */
export function splitByShare(count: number, shares: Share[]): DeviceBlock[] {
  const total = shares.reduce((a, s) => a + s.share, 0);
  const out: DeviceBlock[] = [];
  let first = 0;
  let acc = 0;
  for (const [i, s] of shares.entries()) {
    acc += s.share;
    const end = i === shares.length - 1 ? count : Math.round((count * acc) / total);
    out.push({ region: s.region, first, count: end - first });
    first = end;
  }
  return out;
}

function readShares(p: Problems, v: unknown, regions: RegionTopology[]): Share[] {
  const even = regions.map((r) => ({ region: r.name, share: 1 }));
  if (v === undefined) return even;
  const shares: Share[] = [];
  for (const [region, share] of Object.entries(section(p, 'devices.regions', v))) {
    if (!regions.some((r) => r.name === region)) {
      p.add(
        `devices.regions.${region}`,
        `no such region (regions: ${regions.map((r) => r.name).join(', ')})`,
      );
    }
    shares.push({
      region,
      share: num(p, `devices.regions.${region}`, share, REQUIRED, { min: 0 }),
    });
  }
  if (shares.length === 0 || shares.every((s) => s.share <= 0)) {
    p.add('devices.regions', 'must give at least one region a share > 0');
    return even;
  }
  return shares;
}

/** Parses `"full-jitter:1s:30s"` or `{policy, base, cap, maxAttempts}`. */
function reconnectPolicy(p: Problems, path: string, v: unknown): ReconnectPolicy {
  const table = devicesDefaults.reconnect;
  if (v === undefined) {
    const { policy, base, cap, maxAttempts } = table;
    return { policy, baseMs: ms(base), capMs: ms(cap), maxAttempts };
  }
  let o: Record<string, unknown>;
  if (typeof v === 'string') {
    const [policy, base, cap] = v.split(':');
    o = { policy, base, cap };
    if (base === undefined) delete o.base;
    if (cap === undefined) delete o.cap;
  } else {
    o = section(p, path, v);
  }
  checkKeys(p, path, o, table);
  let policy: ReconnectPolicyName = table.policy;
  if ((RECONNECT_POLICIES as readonly unknown[]).includes(o.policy)) {
    policy = o.policy as ReconnectPolicyName;
  } else {
    p.add(
      typeof v === 'string' ? path : `${path}.policy`,
      `must be one of ${RECONNECT_POLICIES.join(', ')}, got ${JSON.stringify(o.policy)}`,
    );
  }
  const baseMs = duration(p, `${path}.base`, o.base, table.base);
  const capMs = duration(p, `${path}.cap`, o.cap, Math.max(ms(table.cap), baseMs));
  if (capMs < baseMs) p.add(`${path}.cap`, `must be >= base (${baseMs}ms), got ${capMs}ms`);
  const maxAttempts = num(p, `${path}.maxAttempts`, o.maxAttempts, table.maxAttempts, {
    min: 0,
    integer: true,
  });
  return { policy, baseMs, capMs, maxAttempts };
}

function readPeriodicReconnect(p: Problems, v: unknown): Scenario['devices']['periodicReconnect'] {
  if (v === undefined) return devicesDefaults.periodicReconnect;
  const path = 'devices.periodicReconnect';
  const pr = section(p, path, v);
  const d = periodicReconnectDefaults;
  checkKeys(p, path, pr, d);
  const everyMs = duration(p, `${path}.every`, pr.every, d.every, 100);
  const staggerMs = duration(p, `${path}.stagger`, pr.stagger, d.stagger);
  if (staggerMs >= everyMs && everyMs > 0) {
    p.add(`${path}.stagger`, `must be shorter than every (${everyMs}ms)`);
  }
  return { everyMs, staggerMs };
}
