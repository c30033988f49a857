import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isValidMessageId, isValidName } from './protocol.js';
import { parseQueueBody, type QueueBody } from './queue-processor.js';

/** Every outcome of a push, and the HTTP status it is answered with. */
export const pushStatus = {
  delivered: 200,
  acked: 200,
  no_ack: 504,
  not_connected: 404,
  rate_limited: 429,
  overloaded: 503,
  unavailable: 503,
  node_unreachable: 502,
  error: 500,
} as const;

/** A push outcome word. */
export type PushOutcome = keyof typeof pushStatus;

/** What the HTTP API needs from the node behind it. */
export interface NodeApi {
  pushDirect(
    deviceId: string,
    id: string | undefined,
    payloadJson: string,
    ack: { wait: boolean; timeoutMs: number },
  ): Promise<{ outcome: PushOutcome; id: string }>;
  enqueue(messages: readonly QueueBody[]): Promise<string[]>;
  publishRoom(room: string, messageJson: string): Promise<{ offset: number; epoch: string }>;
  accountDevices(
    accountId: string,
  ): Promise<{ deviceId: string; nodeId: string; connectedAtMs: number }[]>;
  drain(windowMs: number | undefined): {
    alreadyDraining: boolean;
    connections: number;
    windowMs: number;
  };
  /** False while draining: `/healthz` answers 503 so balancers take the node out. */
  healthy(): boolean;
  /** Why `/healthz` fails, or `ok`. */
  health(): 'ok' | 'draining' | 'over_capacity';
  prometheus(): string;
  metricsJson(): Record<string, unknown>;
  countResponse(status: number): void;
}

/** HTTP API settings. */
export interface PushApiOptions {
  apiKey: string;
  /** Largest request body; larger gets 413. */
  maxBodyBytes: number;
  /** Device ids per batch push. */
  maxBatch: number;
  /** Longest `?ack=1` wait a caller may ask for. */
  maxAckTimeoutMs: number;
  /** Default `?ack=1` wait. */
  ackTimeoutMs: number;
}

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.error ?? body.status));
  }
}

function authorized(req: IncomingMessage, apiKey: string): boolean {
  const header = req.headers.authorization;
  if (!header?.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7));
  const expected = Buffer.from(apiKey);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

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

function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpProblem(400, { error: 'malformed_json' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpProblem(400, { error: 'body_not_object' });
  }
  return value as Record<string, unknown>;
}

/** Parses and checks a push body: `{"payload": <any JSON>, "id"?: string}`. */
export function parsePushBody(text: string): { payloadJson: string; id: string | undefined } {
  const body = parseJsonObject(text);
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

function decodeSegment(segment: string | undefined, error: string): string {
  let value: string;
  try {
    value = decodeURIComponent(segment ?? '');
  } catch {
    throw new HttpProblem(400, { error });
  }
  if (!isValidName(value)) throw new HttpProblem(400, { error });
  return value;
}

const ROUTES = {
  push: /^\/v1\/push\/([^/]+)$/,
  room: /^\/v1\/rooms\/([^/]+)\/messages$/,
  accountDevices: /^\/v1\/accounts\/([^/]+)\/devices$/,
};

/**
 * The node's HTTP API as one request handler. Every answer is JSON (or
 * Prometheus text on `/metrics`) with a documented status; a bad request never
 * throws out of the handler. All routes but `/healthz` and `/metrics*` need the
 * API key.
 */
export function createPushApi(
  node: NodeApi,
  options: PushApiOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    node.countResponse(status);
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  };
  const method = (req: IncomingMessage, ...allowed: string[]): void => {
    if (!allowed.includes(req.method ?? ''))
      throw new HttpProblem(405, { error: 'method_not_allowed' });
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://node');
    const path = url.pathname;
    if (path === '/healthz') {
      method(req, 'GET', 'HEAD');
      const status = node.health();
      send(res, status === 'ok' ? 200 : 503, { status });
      return;
    }
    if (path === '/metrics') {
      method(req, 'GET');
      const text = node.prometheus();
      node.countResponse(200);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(text);
      return;
    }
    if (path === '/metrics.json') {
      method(req, 'GET');
      send(res, 200, node.metricsJson());
      return;
    }
    const push = ROUTES.push.exec(path);
    const room = ROUTES.room.exec(path);
    const account = ROUTES.accountDevices.exec(path);
    const known =
      push ||
      room ||
      account ||
      path === '/v1/push' ||
      path === '/v1/queue' ||
      path === '/v1/admin/drain';
    if (!known) throw new HttpProblem(404, { error: 'no_such_route' });
    if (!authorized(req, options.apiKey)) throw new HttpProblem(401, { error: 'unauthorized' });

    if (push) {
      method(req, 'POST');
      const deviceId = decodeSegment(push[1], 'bad_device_id');
      const wantAck = url.searchParams.get('ack') === '1';
      const timeoutParam = url.searchParams.get('timeout');
      let ackTimeoutMs = options.ackTimeoutMs;
      if (timeoutParam !== null) {
        ackTimeoutMs = Number(timeoutParam);
        if (
          !Number.isInteger(ackTimeoutMs) ||
          ackTimeoutMs < 1 ||
          ackTimeoutMs > options.maxAckTimeoutMs
        ) {
          throw new HttpProblem(400, {
            error: 'bad_timeout',
            detail: `timeout must be 1-${options.maxAckTimeoutMs} ms`,
          });
        }
      }
      const body = parsePushBody(await readBody(req, options.maxBodyBytes));
      const r = await node.pushDirect(deviceId, body.id, body.payloadJson, {
        wait: wantAck,
        timeoutMs: ackTimeoutMs,
      });
      send(res, pushStatus[r.outcome], { status: r.outcome, id: r.id });
      return;
    }
    if (path === '/v1/push') {
      method(req, 'POST');
      const body = parseJsonObject(await readBody(req, options.maxBodyBytes));
      if (!Array.isArray(body.devices) || body.devices.length === 0) {
        throw new HttpProblem(400, {
          error: 'bad_devices',
          detail: '"devices" must be a non-empty list of device ids',
        });
      }
      if (body.devices.length > options.maxBatch) {
        throw new HttpProblem(413, { error: 'batch_too_large', maxDevices: options.maxBatch });
      }
      if (!body.devices.every(isValidName)) throw new HttpProblem(400, { error: 'bad_device_id' });
      const { payloadJson, id } = parsePushBody(
        JSON.stringify({ payload: body.payload, id: body.id }),
      );
      const devices = body.devices as string[];
      const results = await Promise.all(
        devices.map(async (deviceId, i) => {
          // One message id per device so each device's de-duplication stays per message.
          const r = await node.pushDirect(
            deviceId,
            id === undefined ? undefined : `${id}.${i}`,
            payloadJson,
            {
              wait: false,
              timeoutMs: 0,
            },
          );
          return { device: deviceId, status: r.outcome, code: pushStatus[r.outcome], id: r.id };
        }),
      );
      const counts: Record<string, number> = {};
      for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
      send(res, 200, { results, counts });
      return;
    }
    if (path === '/v1/queue') {
      method(req, 'POST');
      const body = parseJsonObject(await readBody(req, options.maxBodyBytes));
      const list = Array.isArray(body.messages) ? (body.messages as unknown[]) : [body];
      if (list.length === 0 || list.length > options.maxBatch) {
        throw new HttpProblem(400, {
          error: 'bad_messages',
          detail: `1-${options.maxBatch} messages`,
        });
      }
      const parsed = list.map(parseQueueBody);
      const bad = parsed.findIndex((p) => typeof p === 'string');
      if (bad >= 0)
        throw new HttpProblem(400, { error: 'bad_message', index: bad, detail: parsed[bad] });
      const ids = await node.enqueue(parsed as QueueBody[]);
      send(res, 202, { status: 'queued', ids });
      return;
    }
    if (room) {
      method(req, 'PUT', 'POST');
      const name = decodeSegment(room[1], 'bad_room');
      const body = parseJsonObject(await readBody(req, options.maxBodyBytes));
      if (!('payload' in body) || body.payload === undefined)
        throw new HttpProblem(400, { error: 'missing_payload' });
      if (body.id !== undefined && !isValidMessageId(body.id))
        throw new HttpProblem(400, { error: 'bad_id' });
      const message = JSON.stringify({ id: body.id, payload: body.payload });
      const position = await node.publishRoom(name, message);
      send(res, 200, { status: 'published', room: name, ...position });
      return;
    }
    if (account) {
      method(req, 'GET');
      const accountId = decodeSegment(account[1], 'bad_account');
      send(res, 200, { account: accountId, devices: await node.accountDevices(accountId) });
      return;
    }
    // /v1/admin/drain
    method(req, 'POST');
    const text = await readBody(req, options.maxBodyBytes);
    const body = text.trim() === '' ? {} : parseJsonObject(text);
    let windowMs: number | undefined;
    if (body.windowMs !== undefined) {
      if (
        typeof body.windowMs !== 'number' ||
        !Number.isFinite(body.windowMs) ||
        body.windowMs < 0
      ) {
        throw new HttpProblem(400, {
          error: 'bad_window',
          detail: 'windowMs must be a number >= 0',
        });
      }
      windowMs = body.windowMs;
    }
    const r = node.drain(windowMs);
    send(res, 202, { status: r.alreadyDraining ? 'already_draining' : 'draining', ...r });
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
        send(res, err.status, err.body);
      } else if ((err as { code?: string }).code === 'PB_QUEUE_FULL') {
        send(res, 503, {
          error: 'queue_full',
          detail: (err as Error).message,
          queued: (err as { queued?: string[] }).queued ?? [],
        });
      } else if (
        (err as { code?: string }).code === 'PB_REGISTRY_UNAVAILABLE' ||
        (err as { code?: string }).code === 'PB_BROKER_UNAVAILABLE'
      ) {
        send(res, 503, { error: 'unavailable', detail: (err as Error).message });
      } else {
        send(res, 500, { error: 'internal' });
      }
    });
  };
}
