/**
 * The join channel between a run's coordinator and load agents on other hosts
 * (`pushbench agent --join URL --token T`): one WebSocket per agent, dialled by
 * the agent. Control messages are JSON text frames, each checked field by
 * field here; shard traffic (the spawn order and the messages relayed to and
 * from device shards, which carry typed arrays) travels as binary frames in
 * V8's serialization, which carries data only, never code.
 *
 * The order: the agent sends `hello` (token, versions, host facts); the
 * coordinator answers `welcome` or closes with a refusal code and reason. The
 * agent then measures its clock's offset onto the coordinator's (`clock`
 * requests, Cristian's method, core/clock.ts) and reports it as `offset`,
 * again every few seconds during the run. Once every agent has joined, the
 * coordinator sends each its `spawn` (its shards' typed start-up data) and
 * relays `to-shard` messages; the agent relays `from-shard`, `shard-error`
 * and `shard-exit`. `end` (or the coordinator closing) stops the agent's
 * shards. docs/agents.md has the table.
 */
import { deserialize, serialize } from 'node:v8';
import type { ClockOffset } from '../../core/clock.js';
import type { AgentHostFacts } from '../../core/result.js';
import type { DeviceWorkerData, FromAgent, FromWorker, ToWorker } from '../messages.js';
import { noConnectionEvents } from '../run-fold.js';

/** Bumped on any change to the messages below; coordinator and agent must agree. */
export const JOIN_PROTOCOL = 2;

/** Close codes of the join channel (4000-4999: the application's range). */
export const JoinClose = {
  /** The run is over; the agent exits 0. */
  Done: 1000,
  /** A message that is not one of the protocol's, or a binary frame before `welcome`. */
  Malformed: 4400,
  /** Wrong or missing token. */
  BadToken: 4401,
  /** No `hello` within the join deadline. */
  HelloTimeout: 4408,
  /** pushbench or protocol versions differ. */
  VersionMismatch: 4409,
  /** The run has all the agents it asked for, or has started. */
  RunFull: 4429,
  /** The agent refused its spawn order (a config it will not run). */
  BadSpawn: 4422,
} as const;

/** What an agent says about the host it runs on. */
export type HostFacts = AgentHostFacts;

/** Agent -> coordinator, text. */
export type AgentText =
  | {
      t: 'hello';
      protocol: number;
      token: string;
      name: string;
      pushbench: string;
      node: string;
      facts: HostFacts;
    }
  /** A clock request; answered with the coordinator's time. */
  | { t: 'clock'; id: number }
  /** The agent's latest offset estimate onto the coordinator's clock. */
  | ({ t: 'offset' } & ClockOffset)
  /** The agent's processes, read from its /proc. */
  | { t: 'stats'; processes: number; rssBytes: number; cpuSeconds: number };

/** Coordinator -> agent, text. */
export type CoordinatorText =
  | { t: 'welcome'; index: number; name: string }
  | { t: 'clock'; id: number; us: number }
  | { t: 'end' };

/** Coordinator -> agent, binary. Each group is one process of the agent's (see loadgen/shards.ts). */
export type CoordinatorBinary =
  | { t: 'spawn'; groups: DeviceWorkerData[][] }
  | { t: 'to-shard'; shard: number; msg: ToWorker };

/** Agent -> coordinator, binary: the local agent envelope (loadgen/messages.ts). */
export type AgentBinary = FromAgent;

/** A frame that is not a message of the protocol: why, in one line. */
export class JoinProtocolError extends Error {}

function fail(why: string): never {
  throw new JoinProtocolError(why);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, k: string, max = 256): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length > max)
    fail(`${k} must be a string of at most ${max} characters`);
  return v;
}

function num(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${k} must be a finite number`);
  return v;
}

function count(o: Record<string, unknown>, k: string): number {
  const v = num(o, k);
  if (!Number.isInteger(v) || v < 0) fail(`${k} must be a whole number >= 0`);
  return v;
}

function countOrNull(o: Record<string, unknown>, k: string): number | null {
  return o[k] === null ? null : count(o, k);
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function facts(v: unknown): HostFacts {
  if (!isRecord(v)) fail('facts must be an object');
  const addresses = v.addresses;
  if (!Array.isArray(addresses) || addresses.length > 4096) fail('facts.addresses must be a list');
  for (const a of addresses) {
    if (typeof a !== 'string' || !IPV4.test(a)) fail('facts.addresses must hold IPv4 addresses');
  }
  return {
    hostname: str(v, 'hostname'),
    cores: count(v, 'cores'),
    cpuModel: str(v, 'cpuModel'),
    memoryBytes: count(v, 'memoryBytes'),
    freeMemoryBytes: count(v, 'freeMemoryBytes'),
    openFiles: countOrNull(v, 'openFiles'),
    ephemeralPorts: countOrNull(v, 'ephemeralPorts'),
    addresses: addresses as string[],
    maxDevices: count(v, 'maxDevices'),
  };
}

function parseJson(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    fail('not JSON');
  }
  if (!isRecord(v)) fail('not a JSON object');
  return v;
}

/** An agent's text frame as one of {@link AgentText}; throws {@link JoinProtocolError} with the reason. */
export function parseAgentText(text: string): AgentText {
  const o = parseJson(text);
  switch (o.t) {
    case 'hello': {
      const name = str(o, 'name', 64);
      if (!NAME.test(name))
        fail('name must be 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit');
      return {
        t: 'hello',
        protocol: count(o, 'protocol'),
        token: str(o, 'token', 1024),
        name,
        pushbench: str(o, 'pushbench', 64),
        node: str(o, 'node', 64),
        facts: facts(o.facts),
      };
    }
    case 'clock':
      return { t: 'clock', id: count(o, 'id') };
    case 'offset': {
      const uncertaintyUs = num(o, 'uncertaintyUs');
      const roundTripUs = num(o, 'roundTripUs');
      if (uncertaintyUs < 0 || roundTripUs < 0) fail('uncertaintyUs and roundTripUs must be >= 0');
      return {
        t: 'offset',
        offsetUs: num(o, 'offsetUs'),
        uncertaintyUs,
        roundTripUs,
        samples: count(o, 'samples'),
      };
    }
    case 'stats':
      return {
        t: 'stats',
        processes: count(o, 'processes'),
        rssBytes: count(o, 'rssBytes'),
        cpuSeconds: num(o, 'cpuSeconds'),
      };
    default:
      fail(`unknown message type ${JSON.stringify(o.t)?.slice(0, 40)}`);
  }
}

/** A coordinator's text frame as one of {@link CoordinatorText}. */
export function parseCoordinatorText(text: string): CoordinatorText {
  const o = parseJson(text);
  switch (o.t) {
    case 'welcome':
      return { t: 'welcome', index: count(o, 'index'), name: str(o, 'name', 64) };
    case 'clock':
      return { t: 'clock', id: count(o, 'id'), us: num(o, 'us') };
    case 'end':
      return { t: 'end' };
    default:
      fail(`unknown message type ${JSON.stringify(o.t)?.slice(0, 40)}`);
  }
}

/** A binary frame's message, V8-serialized. */
export function encodeBinary(msg: CoordinatorBinary | AgentBinary): Buffer {
  return serialize(msg);
}

function decode(data: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = deserialize(data);
  } catch {
    fail('binary frame is not V8-serialized data');
  }
  if (!isRecord(v)) fail('binary frame is not an object');
  return v;
}

/** An agent's binary frame as a relay envelope, its shape checked (the shard's message is folded by the coordinator, which checks its type). */
export function parseAgentBinary(data: Buffer): AgentBinary {
  const o = decode(data);
  const shard = count(o, 'shard');
  switch (o.type) {
    case 'from-shard':
      return { type: 'from-shard', shard, msg: shardMessage(o.msg) };
    case 'shard-error':
      return { type: 'shard-error', shard, message: str(o, 'message', 4096) };
    case 'shard-exit':
      return { type: 'shard-exit', shard, code: num(o, 'code') };
    default:
      fail(`unknown relay type ${JSON.stringify(o.type)?.slice(0, 40)}`);
  }
}

/** The counters of an interval's connection events (all but the by-reason map). */
const CONNECTION_EVENTS = Object.keys(noConnectionEvents()).filter((k) => k !== 'failuresByReason');

function counts(v: unknown, what: string): void {
  if (!isRecord(v)) fail(`${what} must be an object`);
  for (const x of Object.values(v)) {
    if (typeof x !== 'number' || !Number.isFinite(x)) fail(`${what} must hold numbers`);
  }
}

function snapshots(v: unknown): void {
  if (!isRecord(v)) fail('histograms must be an object');
  for (const x of Object.values(v)) {
    if (typeof x !== 'string') fail('histograms must hold encoded snapshots');
  }
}

function selfCheck(v: unknown): void {
  if (!isRecord(v)) fail('self must be an object');
  num(v, 'elu');
  num(v, 'lagP99Ms');
  num(v, 'lagMaxMs');
  if (v.processCpu !== undefined) num(v, 'processCpu');
  if (v.startLagP99Ms !== undefined) num(v, 'startLagP99Ms');
}

/**
 * A device shard's message as the coordinator folds it, its fields checked:
 * numbers are finite numbers, bitsets and arrays are typed arrays, so a bad
 * agent can be refused but never poison the fold's sums.
 */
function shardMessage(v: unknown): FromWorker {
  if (!isRecord(v)) fail('from-shard needs a message');
  switch (v.type) {
    case 'ready':
      if (v.role !== 'devices') fail('ready must come from a device shard');
      break;
    case 'fatal':
      str(v, 'message', 65_536);
      break;
    case 'ramp-done':
      count(v, 'workerIndex');
      count(v, 'failed');
      if (!(v.established instanceof Int32Array))
        fail('ramp-done needs established as an Int32Array');
      break;
    case 'device-interval':
      for (const k of [
        'workerIndex',
        'open',
        'established',
        'connectsOk',
        'received',
        ...CONNECTION_EVENTS,
      ]) {
        count(v, k);
      }
      num(v, 'atUs');
      counts(v.failuresByReason, 'failuresByReason');
      counts(v.trafficCounters, 'trafficCounters');
      snapshots(v.histograms);
      selfCheck(v.self);
      break;
    case 'device-final':
      for (const k of [
        'workerIndex',
        'requested',
        'established',
        'heldAtEnd',
        'reconnectingAtEnd',
        'duplicates',
        'gaveUp',
        'badFrames',
      ]) {
        count(v, k);
      }
      for (const k of ['failuresByReason', 'closesByCode', 'lossesByCause']) counts(v[k], k);
      snapshots(v.histograms);
      if (!(v.delivered instanceof Uint8Array) || !(v.late instanceof Uint8Array)) {
        fail('device-final needs delivered and late as Uint8Arrays');
      }
      if (!(v.drops instanceof Float64Array) || !(v.dropNodes instanceof Int32Array)) {
        fail('device-final needs drops (Float64Array) and dropNodes (Int32Array)');
      }
      if (!Array.isArray(v.nodeNames) || v.nodeNames.some((n) => typeof n !== 'string')) {
        fail('device-final needs nodeNames as strings');
      }
      selfCheck(v.self);
      break;
    default:
      fail(`a device shard does not send ${JSON.stringify(v.type)?.slice(0, 40)}`);
  }
  return v as unknown as FromWorker;
}

const TO_WORKER = new Set(['start', 'deadline', 'finish', 'connect-more', 'publishing', 'clock']);

/** The coordinator's binary frame: a spawn order (every shard's data checked) or a relay. */
export function parseCoordinatorBinary(data: Buffer): CoordinatorBinary {
  const o = decode(data);
  switch (o.t) {
    case 'spawn': {
      if (!Array.isArray(o.groups) || o.groups.length === 0) fail('spawn needs groups');
      const groups = o.groups.map((g) => {
        if (!Array.isArray(g) || g.length === 0) fail('each spawn group needs shards');
        return g.map(workerData);
      });
      const indices = new Set(groups.flat().map((d) => d.workerIndex));
      if (indices.size !== groups.flat().length) fail('two shards with one worker index');
      return { t: 'spawn', groups };
    }
    case 'to-shard': {
      const shard = count(o, 'shard');
      if (!isRecord(o.msg) || !TO_WORKER.has(o.msg.type as string))
        fail('to-shard needs a device shard message');
      return { t: 'to-shard', shard, msg: o.msg as unknown as ToWorker };
    }
    default:
      fail(`unknown message type ${JSON.stringify(o.t)?.slice(0, 40)}`);
  }
}

/**
 * One shard's start-up data, checked before anything runs: the agent takes a
 * typed config, never code (V8 deserialization cannot carry functions), and
 * refuses one whose fields are not what a device shard needs.
 */
function workerData(v: unknown): DeviceWorkerData {
  if (!isRecord(v) || v.role !== 'devices') fail('a shard must be a device shard');
  for (const k of [
    'workerIndex',
    'firstDevice',
    'deviceCount',
    'reserveFirst',
    'reserveCount',
    'accounts',
    'seed',
  ]) {
    count(v, k);
  }
  if (num(v, 'connectRateHz') < 0) fail('connectRateHz must be >= 0');
  for (const k of ['rampDelayUs', 'rampEndUs']) {
    if (v[k] !== undefined && !(num(v, k) >= 0)) fail(`${k} must be >= 0`);
  }
  if (v.aheadBy !== undefined) {
    const by = num(v, 'aheadBy');
    if (!Number.isInteger(by) || by < 0 || by > 19) fail('aheadBy must be an integer 0-19');
  }
  for (const k of ['connectTimeoutMs', 'reportIntervalMs', 'tokenTtlSec']) {
    if (!(num(v, k) > 0)) fail(`${k} must be positive`);
  }
  str(v, 'secret', 1024);
  if (!Array.isArray(v.routes) || v.routes.length === 0) fail('a shard needs routes');
  for (const r of v.routes) {
    if (!isRecord(r)) fail('a route must be an object');
    str(r, 'region', 64);
    str(r, 'host', 253);
    str(r, 'path', 2048);
    count(r, 'first');
    count(r, 'count');
    const port = count(r, 'port');
    if (port < 1 || port > 65_535) fail('a route port must be 1-65535');
    if (!Array.isArray(r.localAddresses)) fail('a route needs localAddresses');
  }
  if (!isRecord(v.reconnect)) fail('a shard needs a reconnect policy');
  return v as unknown as DeviceWorkerData;
}
