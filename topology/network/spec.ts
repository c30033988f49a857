import { isIPv4 } from 'node:net';
import { PushbenchError } from '../../core/errors.js';
import { MAX_RELAYS } from './relays.js';
import {
  BALANCER_ALGORITHMS,
  type BackendSpec,
  type BalancerAlgorithm,
  type ExternalRegionSpec,
  type FaultScope,
  type HealthCheckSpec,
  type NetworkFault,
  type NetworkSpec,
  type RegionSpec,
} from './types.js';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Collects every problem of one input before failing, each naming its path. */
class Problems {
  readonly list: string[] = [];

  add(path: string, message: string): void {
    this.list.push(`${path} ${message}`);
  }

  str(o: Obj, key: string, path: string): string {
    const v = o[key];
    if (typeof v === 'string' && v.length > 0) return v;
    this.add(`${path}.${key}`, `must be a non-empty string (got ${JSON.stringify(v)})`);
    return '';
  }

  num(o: Obj, key: string, path: string, min: number, integer = false): number {
    const v = o[key];
    if (
      typeof v === 'number' &&
      Number.isFinite(v) &&
      v >= min &&
      (!integer || Number.isInteger(v))
    )
      return v;
    this.add(
      `${path}.${key}`,
      `must be ${integer ? 'an integer' : 'a number'} >= ${min} (got ${JSON.stringify(v)})`,
    );
    return min;
  }

  /** A TCP port, 1-65535. */
  port(o: Obj, key: string, path: string): number {
    const v = o[key];
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65_535) return v;
    this.add(`${path}.${key}`, `must be a port from 1 to 65535 (got ${JSON.stringify(v)})`);
    return 1;
  }

  obj(v: unknown, path: string): Obj {
    if (isObj(v)) return v;
    this.add(path, `must be an object (got ${JSON.stringify(v)})`);
    return {};
  }

  /** Throws a PB_BAD_SCENARIO naming the first problem and how many more there are. */
  throwIfAny(what: string): void {
    const [first] = this.list;
    if (first === undefined) return;
    const more = this.list.length > 1 ? ` (and ${this.list.length - 1} more)` : '';
    throw new PushbenchError('PB_BAD_SCENARIO', `${what}: ${first}${more}`, this.list);
  }
}

function health(p: Problems, v: unknown, path: string): HealthCheckSpec {
  const o = p.obj(v, path);
  return {
    intervalMs: p.num(o, 'intervalMs', path, 1),
    timeoutMs: p.num(o, 'timeoutMs', path, 1),
    fall: p.num(o, 'fall', path, 1, true),
    rise: p.num(o, 'rise', path, 1, true),
  };
}

function backend(p: Problems, v: unknown, path: string): BackendSpec {
  const o = p.obj(v, path);
  return {
    nodeId: p.str(o, 'nodeId', path),
    host: p.str(o, 'host', path),
    port: p.port(o, 'port', path),
    ...(o.pid !== undefined && { pid: p.num(o, 'pid', path, 1, true) }),
  };
}

function scope(p: Problems, v: unknown, path: string): FaultScope {
  const o = p.obj(v, path);
  if (typeof o.region === 'string') return { region: o.region };
  if (typeof o.nodeId === 'string') return { nodeId: o.nodeId };
  p.add(path, `must be { region } or { nodeId } (got ${JSON.stringify(v)})`);
  return { region: '' };
}

/** Parses and checks a network spec; throws PB_BAD_SCENARIO listing every problem. */
export function parseNetworkSpec(input: unknown): NetworkSpec {
  const p = new Problems();
  const o = p.obj(input, 'spec');
  const spec: NetworkSpec = {
    host: p.str(o, 'host', 'spec'),
    seed: p.num(o, 'seed', 'spec', 0, true),
    regions: [],
  };
  const regions = Array.isArray(o.regions) ? o.regions : [];
  const externals = (o.global as { external?: unknown } | undefined)?.external;
  if (regions.length === 0 && !(Array.isArray(externals) && externals.length > 0)) {
    p.add('spec.regions', 'must list at least one region');
  }
  const nodeIds = new Set<string>();
  regions.forEach((r, i) => {
    const path = `spec.regions[${i}]`;
    const ro = p.obj(r, path);
    const algorithm = ro.algorithm;
    if (!BALANCER_ALGORITHMS.includes(algorithm as BalancerAlgorithm)) {
      p.add(
        `${path}.algorithm`,
        `must be one of ${BALANCER_ALGORITHMS.join(', ')} (got ${JSON.stringify(algorithm)})`,
      );
    }
    const region: RegionSpec = {
      name: p.str(ro, 'name', path),
      algorithm: algorithm as BalancerAlgorithm,
      slowStartMs: p.num(ro, 'slowStartMs', path, 0),
      health: health(p, ro.health, `${path}.health`),
      backends: [],
    };
    if (ro.failOpen !== undefined) {
      if (typeof ro.failOpen !== 'boolean') p.add(`${path}.failOpen`, 'must be true or false');
      else region.failOpen = ro.failOpen;
    }
    if (ro.redispatch !== undefined) {
      if (typeof ro.redispatch !== 'boolean') p.add(`${path}.redispatch`, 'must be true or false');
      else region.redispatch = ro.redispatch;
    }
    if (ro.maxConnecting !== undefined) {
      const v = ro.maxConnecting;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
        p.add(`${path}.maxConnecting`, 'must be a whole number >= 1');
      else region.maxConnecting = v;
    }
    if (ro.queueTimeoutMs !== undefined) {
      const v = ro.queueTimeoutMs;
      if (typeof v !== 'number' || !(v > 0))
        p.add(`${path}.queueTimeoutMs`, 'must be a number > 0');
      else region.queueTimeoutMs = v;
    }
    if (spec.regions.some((x) => x.name === region.name)) {
      p.add(`${path}.name`, `repeats region ${JSON.stringify(region.name)}; names must be unique`);
    }
    const backends = Array.isArray(ro.backends) ? ro.backends : [];
    if (!Array.isArray(ro.backends)) p.add(`${path}.backends`, 'must be an array');
    backends.forEach((b, j) => {
      const bs = backend(p, b, `${path}.backends[${j}]`);
      if (nodeIds.has(bs.nodeId)) {
        p.add(`${path}.backends[${j}].nodeId`, `repeats ${JSON.stringify(bs.nodeId)}`);
      }
      nodeIds.add(bs.nodeId);
      region.backends.push(bs);
    });
    spec.regions.push(region);
  });
  if (o.global !== undefined) {
    const go = p.obj(o.global, 'spec.global');
    if (go.mode !== 'latency' && go.mode !== 'health') {
      p.add('spec.global.mode', `must be latency or health (got ${JSON.stringify(go.mode)})`);
    }
    const external: ExternalRegionSpec[] = [];
    if (go.external !== undefined) {
      if (!Array.isArray(go.external)) p.add('spec.global.external', 'must be an array');
      else if (go.mode !== 'health' || o.relays === undefined) {
        p.add('spec.global.external', 'needs mode "health" and relay mode (spec.relays)');
      }
      for (const [i, e] of (Array.isArray(go.external) ? go.external : []).entries()) {
        const path = `spec.global.external[${i}]`;
        const eo = p.obj(e, path);
        const region: ExternalRegionSpec = {
          name: p.str(eo, 'name', path),
          host: p.str(eo, 'host', path),
          port: p.port(eo, 'port', path),
        };
        if (eo.tls !== undefined) {
          if (typeof eo.tls !== 'boolean') p.add(`${path}.tls`, 'must be true or false');
          else if (eo.tls) region.tls = true;
        }
        if (
          spec.regions.some((r) => r.name === region.name) ||
          external.some((r) => r.name === region.name)
        ) {
          p.add(
            `${path}.name`,
            `repeats region ${JSON.stringify(region.name)}; names must be unique`,
          );
        }
        external.push(region);
      }
    }
    const known = [...spec.regions.map((r) => r.name), ...external.map((r) => r.name)];
    let order: string[] | undefined;
    if (go.order !== undefined) {
      const list = go.order;
      if (
        !Array.isArray(list) ||
        list.length !== known.length ||
        !known.every((name) => list.includes(name))
      ) {
        p.add(
          'spec.global.order',
          `must list every region once (${known.join(', ')}), got ${JSON.stringify(list)}`,
        );
      } else {
        order = list as string[];
      }
    }
    const homes = p.obj(go.homeByAddress ?? {}, 'spec.global.homeByAddress');
    const homeByAddress: Record<string, string> = {};
    for (const [address, region] of Object.entries(homes)) {
      if (typeof region !== 'string' || !known.includes(region)) {
        p.add(
          `spec.global.homeByAddress.${address}`,
          `names no region (${JSON.stringify(region)})`,
        );
      } else {
        homeByAddress[address] = region;
      }
    }
    spec.global = {
      mode: go.mode === 'health' ? 'health' : 'latency',
      health: health(p, go.health, 'spec.global.health'),
      homeByAddress,
      ...(external.length > 0 && { external }),
      ...(order && { order }),
    };
  }
  if (o.synRetriesS !== undefined) {
    const list = o.synRetriesS;
    const ok =
      Array.isArray(list) &&
      list.length > 0 &&
      list.every(
        (x, i) => typeof x === 'number' && x >= 0 && (i === 0 || x > (list[i - 1] as number)),
      );
    if (ok) spec.synRetriesS = list as number[];
    else p.add('spec.synRetriesS', `must be increasing seconds >= 0 (got ${JSON.stringify(list)})`);
  }
  if (o.relays !== undefined) {
    const r = p.obj(o.relays, 'spec.relays');
    const count = r.count;
    const files = r.openFiles;
    const countOk =
      typeof count === 'number' && Number.isInteger(count) && count >= 1 && count <= MAX_RELAYS;
    const filesOk =
      files === null || (typeof files === 'number' && Number.isInteger(files) && files > 200);
    if (!countOk)
      p.add('spec.relays.count', `must be an integer from 1 to 256 (got ${JSON.stringify(count)})`);
    if (!filesOk)
      p.add(
        'spec.relays.openFiles',
        `must be null or an integer over 200 (got ${JSON.stringify(files)})`,
      );
    const sources = r.sourceAddresses;
    const sourcesOk =
      sources === undefined ||
      (Array.isArray(sources) &&
        sources.length <= 254 &&
        sources.every((a) => typeof a === 'string' && isIPv4(a)));
    if (!sourcesOk) {
      p.add(
        'spec.relays.sourceAddresses',
        `must be at most 254 IPv4 addresses (got ${JSON.stringify(sources)})`,
      );
    }
    if (countOk && filesOk && sourcesOk) {
      spec.relays = {
        count: count as number,
        openFiles: files as number | null,
        ...(sources !== undefined && { sourceAddresses: sources as string[] }),
      };
    }
  }
  p.throwIfAny('bad network spec');
  return spec;
}

/** Parses a backend spec; throws PB_BAD_SCENARIO. */
export function parseBackendSpec(input: unknown): BackendSpec {
  const p = new Problems();
  const b = backend(p, input, 'backend');
  p.throwIfAny('bad backend');
  return b;
}

/** Parses a fault scope; throws PB_BAD_SCENARIO. */
export function parseFaultScope(input: unknown): FaultScope {
  const p = new Problems();
  const s = scope(p, input, 'scope');
  p.throwIfAny('bad fault scope');
  return s;
}

/** Parses a network fault; throws PB_BAD_SCENARIO listing every problem. */
export function parseNetworkFault(input: unknown): NetworkFault {
  const p = new Problems();
  const o = p.obj(input, 'fault');
  const s = scope(p, o.scope, 'fault.scope');
  let fault: NetworkFault;
  switch (o.kind) {
    case 'latency':
      fault = {
        kind: 'latency',
        scope: s,
        delayMs: p.num(o, 'delayMs', 'fault', 0),
        jitterMs: p.num(o, 'jitterMs', 'fault', 0),
      };
      break;
    case 'blackhole':
      fault = { kind: 'blackhole', scope: s };
      break;
    case 'reset':
      fault = { kind: 'reset', scope: s };
      break;
    case 'conntrack-limit':
      fault = { kind: 'conntrack-limit', scope: s, table: p.num(o, 'table', 'fault', 0, true) };
      break;
    case 'admission-rate':
      fault = {
        kind: 'admission-rate',
        scope: s,
        ratePerSec: p.num(o, 'ratePerSec', 'fault', 0),
        burst: p.num(o, 'burst', 'fault', 1),
      };
      break;
    default:
      p.add('fault.kind', `is not a network fault (got ${JSON.stringify(o.kind)})`);
      fault = { kind: 'blackhole', scope: s };
  }
  if (o.standing !== undefined && typeof o.standing !== 'boolean') {
    p.add('fault.standing', 'must be true or false');
  }
  p.throwIfAny('bad network fault');
  return o.standing === true ? { ...fault, standing: true } : fault;
}
