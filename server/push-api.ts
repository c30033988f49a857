import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NodeMetrics } from './metrics.js';
import { isValidMessageId } from './protocol.js';
import { isValidId } from './token.js';

/** What happened to one push. */
export type PushOutcome = 'delivered' | 'not_connected' | 'overloaded';

/** What the HTTP API needs from the node behind it. */
export interface PushDelivery {
  /** Writes a push to the device's socket; resolves once written (or known impossible). */
  deliver(
    deviceId: string,
    messageId: string | undefined,
    payloadJson: string,
  ): Promise<{
    outcome: PushOutcome;
    id: string;
  }>;
  /** Counters served on `GET /metrics`. */
  metrics: NodeMetrics;
  /** Extra facts for `GET /metrics` (node id, uptime). */
  describe(): Record<string, unknown>;
}

/** HTTP API settings. */
export interface PushApiOptions {
  /** The bearer key services must present. */
  apiKey: string;
  /** Largest request body accepted; larger gets 413. */
  maxBodyBytes: number;
}

const statusOf: Record<PushOutcome, number> = {
  delivered: 200,
  not_connected: 404,
  overloaded: 503,
};

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.error ?? body.status));
  }
}

function send(res: ServerResponse, metrics: NodeMetrics, status: number, body: unknown): void {
  NodeMetrics.bump(metrics.httpResponses, status);
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function authorized(req: IncomingMessage, apiKey: string): boolean {
  const header = req.headers.authorization;
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7));
  const expected = Buffer.from(apiKey);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Reads the body up to `maxBytes`; throws 413 past it. */
async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new HttpProblem(413, { error: 'body_too_large', maxBytes });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpProblem(413, { error: 'body_too_large', maxBytes });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses and checks a push body: `{"payload": <any JSON>, "id"?: string}`. */
export function parsePushBody(text: string): { payloadJson: string; id: string | undefined } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpProblem(400, { error: 'malformed_json' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpProblem(400, { error: 'body_not_object' });
  }
  const body = value as Record<string, unknown>;
  if (!('payload' in body) || body.payload === undefined) {
    throw new HttpProblem(400, { error: 'missing_payload' });
  }
  if (body.id !== undefined && !isValidMessageId(body.id)) {
    throw new HttpProblem(400, {
      error: 'bad_id',
      detail: 'id must be 1-128 printable characters',
    });
  }
  return { payloadJson: JSON.stringify(body.payload), id: body.id };
}

const PUSH_ROUTE = /^\/v1\/push\/([^/?]+)$/;

/**
 * The node's HTTP API as one request handler: `GET /healthz`, `GET /metrics`,
 * `POST /v1/push/{deviceId}`. Every answer is JSON with a documented status; a
 * bad request never throws out of the handler.
 */
export function createPushApi(
  node: PushDelivery,
  options: PushApiOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    if (path === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw new HttpProblem(405, { error: 'method_not_allowed' });
      send(res, node.metrics, 200, { status: 'ok' });
      return;
    }
    if (path === '/metrics') {
      if (req.method !== 'GET') throw new HttpProblem(405, { error: 'method_not_allowed' });
      send(res, node.metrics, 200, { ...node.describe(), ...node.metrics });
      return;
    }
    const route = PUSH_ROUTE.exec(path);
    if (!route) throw new HttpProblem(404, { error: 'no_such_route' });
    if (req.method !== 'POST') throw new HttpProblem(405, { error: 'method_not_allowed' });
    if (!authorized(req, options.apiKey)) throw new HttpProblem(401, { error: 'unauthorized' });
    let deviceId: string;
    try {
      deviceId = decodeURIComponent(route[1] ?? '');
    } catch {
      throw new HttpProblem(400, { error: 'bad_device_id' });
    }
    if (!isValidId(deviceId)) throw new HttpProblem(400, { error: 'bad_device_id' });
    const body = parsePushBody(await readBody(req, options.maxBodyBytes));
    const result = await node.deliver(deviceId, body.id, body.payloadJson);
    send(res, node.metrics, statusOf[result.outcome], { status: result.outcome, id: result.id });
  }

  return (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpProblem) {
        // A 413 leaves an unread body on the socket: close it rather than read megabytes.
        if (err.status === 413) res.setHeader('connection', 'close');
        send(res, node.metrics, err.status, err.body);
      } else {
        send(res, node.metrics, 500, { error: 'internal' });
      }
    });
  };
}
