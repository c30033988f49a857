import { parseBackendSpec, parseFaultScope, parseNetworkFault } from './spec.js';
import type {
  AddBackendOptions,
  BackendSpec,
  FaultScope,
  NetworkAddresses,
  NetworkFault,
  NetworkSample,
} from './types.js';

/**
 * A control request from the harness to the network process; `args` are the
 * arguments of the {@link Network} method of the same name.
 */
export type NetworkRequest =
  | { id: number; op: 'addresses'; args: [] }
  | { id: number; op: 'addBackend'; args: [string, BackendSpec, AddBackendOptions?] }
  | { id: number; op: 'removeBackend'; args: [string, string] }
  | { id: number; op: 'applyFault'; args: [NetworkFault] }
  | { id: number; op: 'clearFault'; args: [string] }
  | { id: number; op: 'clearScope'; args: [FaultScope] }
  | { id: number; op: 'sample'; args: [] }
  | { id: number; op: 'stop'; args: [] };

/** The operations a request may name. */
export type NetworkOp = NetworkRequest['op'];

/** What each operation answers. */
export interface NetworkResults {
  addresses: NetworkAddresses;
  addBackend: null;
  removeBackend: null;
  applyFault: string;
  clearFault: null;
  clearScope: null;
  sample: NetworkSample;
  stop: null;
}

/** The network process's answer to one request. */
export type NetworkReply =
  | { id: number; result: unknown }
  | { id: number; error: { code: string; message: string } };

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string`);
  return v;
}

/** Parses a request received over IPC; throws on anything malformed. */
export function parseNetworkRequest(msg: unknown): NetworkRequest {
  if (typeof msg !== 'object' || msg === null) throw new TypeError('request must be an object');
  const { id, op, args } = msg as { id?: unknown; op?: unknown; args?: unknown };
  if (typeof id !== 'number') throw new TypeError('request id must be a number');
  const a: unknown[] = Array.isArray(args) ? args : [];
  switch (op) {
    case 'addresses':
    case 'sample':
    case 'stop':
      return { id, op, args: [] };
    case 'addBackend': {
      const opts = a[2];
      const assumeHealthy =
        typeof opts === 'object' && opts !== null && 'assumeHealthy' in opts
          ? opts.assumeHealthy === true
          : false;
      return {
        id,
        op,
        args: [str(a[0], 'region'), parseBackendSpec(a[1]), { assumeHealthy }],
      };
    }
    case 'removeBackend':
      return { id, op, args: [str(a[0], 'region'), str(a[1], 'nodeId')] };
    case 'applyFault':
      return { id, op, args: [parseNetworkFault(a[0])] };
    case 'clearFault':
      return { id, op, args: [str(a[0], 'fault id')] };
    case 'clearScope':
      return { id, op, args: [parseFaultScope(a[0])] };
    default:
      throw new TypeError(`unknown op ${JSON.stringify(op)}`);
  }
}

/** Parses a reply received over IPC; undefined when it is not one. */
export function parseNetworkReply(msg: unknown): NetworkReply | undefined {
  if (typeof msg !== 'object' || msg === null) return undefined;
  const m = msg as { id?: unknown; result?: unknown; error?: unknown };
  if (typeof m.id !== 'number') return undefined;
  if (typeof m.error === 'object' && m.error !== null) {
    const e = m.error as { code?: unknown; message?: unknown };
    return {
      id: m.id,
      error: { code: String(e.code ?? 'PB_INTERNAL'), message: String(e.message ?? '') },
    };
  }
  return { id: m.id, result: m.result ?? null };
}
