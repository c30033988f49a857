import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { RegistryUnavailableError } from '../core/errors.js';
import { redactUrl } from './redis-url.js';
import {
  checkTtlMs,
  type PushRegistry,
  type RefreshItem,
  type RefreshResult,
  type RegisteredDevice,
  type RegistryEntry,
  type RegistryOptions,
  registryDefaults,
} from './registry.js';

/**
 * Settings of a {@link RedisRegistry}: the registry's options (documented in
 * registry.ts, defaults in `registryDefaults`) less the memory-only clock, plus
 * the URL. A key prefix lets one Redis hold several registries (and tests clean up).
 */
export type RedisRegistryOptions = Omit<RegistryOptions, 'nowMs'> & {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. */
  url: string;
};

/** Devices per refresh script call: bounds how long one call blocks Redis. */
const REFRESH_CHUNK = 500;
/** Keys per MGET when listing an index. */
const MGET_CHUNK = 1000;

interface LuaScript {
  readonly source: string;
  readonly sha: string;
}

// Every script judges time by the Redis server's clock, the same clock that
// expires the device keys, so index scores and key TTLs agree and nodes with
// skewed clocks cannot disagree about what is expired. (TIME before writes needs
// effects replication: the default since Redis 5.)
const NOW_MS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

function lua(body: string): LuaScript {
  const source = NOW_MS + body;
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

// Index keys are derived inside the scripts from the entries they read (the
// old entry's account and node are only known there), so the scripts touch
// keys not passed in KEYS: fine on a standalone Redis or one primary with
// replicas, not on Redis Cluster.

/** KEYS[1] device key; ARGV prefix, deviceId, entry JSON, ttlMs, accountId, nodeId. Returns the old JSON or nil. */
const REGISTER = lua(`
local ttl = tonumber(ARGV[4])
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
if old then
  local o = cjson.decode(old)
  if o.accountId ~= ARGV[5] then redis.call('ZREM', ARGV[1] .. 'acct:' .. o.accountId, ARGV[2]) end
  if o.nodeId ~= ARGV[6] then redis.call('ZREM', ARGV[1] .. 'node:' .. o.nodeId, ARGV[2]) end
end
for _, index in ipairs({ ARGV[1] .. 'acct:' .. ARGV[5], ARGV[1] .. 'node:' .. ARGV[6] }) do
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, now + ttl, ARGV[2])
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end
return old
`);

/** KEYS device keys; ARGV prefix, ttlMs, then deviceId, connId per key. Returns the 1-based positions not current. */
const REFRESH = lua(`
local ttl = tonumber(ARGV[2])
local touched = {}
local stale = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur then
    local o = cjson.decode(cur)
    if o.connId == ARGV[2 + 2 * i] then
      local deviceId = ARGV[1 + 2 * i]
      local account = ARGV[1] .. 'acct:' .. o.accountId
      local node = ARGV[1] .. 'node:' .. o.nodeId
      redis.call('PEXPIRE', key, ttl)
      redis.call('ZADD', account, now + ttl, deviceId)
      redis.call('ZADD', node, now + ttl, deviceId)
      touched[account] = true
      touched[node] = true
    else
      stale[#stale + 1] = i
    end
  else
    stale[#stale + 1] = i
  end
end
for index in pairs(touched) do
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end
return stale
`);

/** KEYS[1] device key; ARGV prefix, deviceId, connId. Returns 1 if it deleted. */
const UNREGISTER = lua(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local o = cjson.decode(cur)
if o.connId ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. 'acct:' .. o.accountId, ARGV[2])
redis.call('ZREM', ARGV[1] .. 'node:' .. o.nodeId, ARGV[2])
return 1
`);

/** KEYS[1] index key. Prunes expired members, returns the rest. */
const LIST = lua(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`);

/**
 * The push registry in Redis, shared by every node pointed at the same Redis
 * and key prefix. Key layout (P = `keyPrefix`):
 *
 * - `P dev:<deviceId>` — string, the entry as JSON
 *   (`{"nodeId","connId","accountId","connectedAtMs"}`, and `"peer"` when the holder has a peer link), with a PX TTL.
 * - `P acct:<accountId>` — sorted set of device ids scored by the epoch ms
 *   (Redis clock) at which that device's entry expires.
 * - `P node:<nodeId>` — the same, per node.
 *
 * Every write is one Lua script, so it is atomic with respect to every other
 * node: register is get-old-and-set, unregister is compare-and-delete on
 * `connId`, refresh extends only entries whose `connId` still matches. An index
 * key's own TTL is kept at least as long as its longest-lived member, so an
 * index nobody touches disappears by itself; members whose score has passed are
 * removed (ZREMRANGEBYSCORE) on every register and every listing, and a listing
 * also drops members whose entry is gone or now names another account/node.
 *
 * Fails fast when Redis is down: no offline queue, no retry of a command whose
 * connection dropped, a command timeout; such failures reject with
 * {@link RegistryUnavailableError} while the client reconnects in the
 * background. A timed-out write may still have been applied. Standalone Redis
 * only (see the note on the scripts), version 5 or later.
 */
export class RedisRegistry implements PushRegistry {
  private readonly redis: Redis;
  private readonly prefix: string;
  /** The URL without its password, for messages. */
  private readonly shownUrl: string;
  /** The last connection-level error, to say *why* a command failed. */
  private lastError: Error | undefined;

  private constructor(redis: Redis, options: RedisRegistryOptions) {
    this.redis = redis;
    this.prefix = options.keyPrefix ?? registryDefaults.keyPrefix;
    this.shownUrl = redactUrl(options.url);
    // Without a listener ioredis prints every reconnect failure to the console.
    redis.on('error', (err: Error) => {
      this.lastError = err;
    });
    redis.on('ready', () => {
      this.lastError = undefined;
      if (this.readyBefore) for (const listener of this.reconnectListeners) listener();
      this.readyBefore = true;
    });
  }

  private readyBefore = false;
  private readonly reconnectListeners: Array<() => void> = [];

  onReconnect(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  /**
   * Connects, PINGs, and resolves with the registry; rejects with
   * {@link RegistryUnavailableError} ("cannot reach Redis at URL: ECONNREFUSED")
   * when Redis does not answer within the connect timeout.
   */
  static async connect(options: RedisRegistryOptions): Promise<RedisRegistry> {
    const redis = new Redis(options.url, {
      lazyConnect: true,
      // Fail fast instead of queueing while disconnected: a node answers 503
      // now rather than hold a device's upgrade until Redis comes back.
      enableOfflineQueue: false,
      // Fail in-flight commands as soon as their connection drops...
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // ...and those whose connection is silently dead.
      commandTimeout: options.commandTimeoutMs ?? registryDefaults.commandTimeoutMs,
      connectTimeout: options.connectTimeoutMs ?? registryDefaults.connectTimeoutMs,
      // Keep reconnecting in the background, in short gaps: a Redis that comes back is found within 200 ms (the 404-for-connected
      // window after an empty restart is this plus one re-check pass).
      retryStrategy: (times: number) => Math.min(times * 50, 200),
    });
    const registry = new RedisRegistry(redis, options);
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      const why = registry.lastError ?? err;
      throw new RegistryUnavailableError(
        `cannot reach Redis at ${registry.shownUrl}: ${describeError(why)}`,
        { cause: why },
      );
    }
    return registry;
  }

  async register(
    deviceId: string,
    entry: RegistryEntry,
    ttlMs: number,
  ): Promise<RegistryEntry | undefined> {
    checkTtlMs(ttlMs);
    const json = JSON.stringify({
      nodeId: entry.nodeId,
      connId: entry.connId,
      accountId: entry.accountId,
      connectedAtMs: entry.connectedAtMs,
      ...(entry.peer !== undefined && { peer: entry.peer }),
    });
    const key = this.deviceKey(deviceId);
    const old = toOptionalString(
      await this.send('register', () =>
        this.evalScript(
          REGISTER,
          [key],
          [this.prefix, deviceId, json, ttlMs, entry.accountId, entry.nodeId],
        ),
      ),
    );
    if (old === undefined) return undefined;
    const previous = parseEntry(old, key);
    return previous.connId === entry.connId ? undefined : previous;
  }

  async lookup(deviceId: string): Promise<RegistryEntry | undefined> {
    const key = this.deviceKey(deviceId);
    const raw = await this.send('lookup', () => this.redis.get(key));
    return raw === null ? undefined : parseEntry(raw, key);
  }

  async refresh(items: readonly RefreshItem[], ttlMs: number): Promise<RefreshResult> {
    checkTtlMs(ttlMs);
    const calls: Promise<unknown>[] = [];
    const starts: number[] = [];
    for (let start = 0; start < items.length; start += REFRESH_CHUNK) {
      starts.push(start);
      const keys: string[] = [];
      const args: (string | number)[] = [this.prefix, ttlMs];
      for (const item of items.slice(start, start + REFRESH_CHUNK)) {
        keys.push(this.deviceKey(item.deviceId));
        args.push(item.deviceId, item.connId);
      }
      // One connection pipelines the chunks: one round trip for all of them.
      calls.push(this.send('refresh', () => this.evalScript(REFRESH, keys, args)));
    }
    const replies = await Promise.all(calls);
    const stale: RefreshItem[] = [];
    replies.forEach((reply, chunk) => {
      const start = starts[chunk] ?? 0;
      for (const position of toIntegers(reply)) {
        const item = items[start + position - 1];
        if (item) stale.push(item);
      }
    });
    return { refreshed: items.length - stale.length, stale };
  }

  async unregister(deviceId: string, connId: string): Promise<boolean> {
    const deleted = await this.send('unregister', () =>
      this.evalScript(UNREGISTER, [this.deviceKey(deviceId)], [this.prefix, deviceId, connId]),
    );
    return toCount(deleted) === 1;
  }

  async accountDevices(accountId: string): Promise<RegisteredDevice[]> {
    return this.list(`${this.prefix}acct:${accountId}`, 'accountId', accountId);
  }

  async nodeDevices(nodeId: string): Promise<RegisteredDevice[]> {
    return this.list(`${this.prefix}node:${nodeId}`, 'nodeId', nodeId);
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      // Already disconnected: nothing to say goodbye to.
    } finally {
      this.redis.disconnect();
    }
  }

  private deviceKey(deviceId: string): string {
    return `${this.prefix}dev:${deviceId}`;
  }

  private async list(
    indexKey: string,
    field: 'accountId' | 'nodeId',
    id: string,
  ): Promise<RegisteredDevice[]> {
    const members = toStrings(await this.send('list', () => this.evalScript(LIST, [indexKey], [])));
    const devices: RegisteredDevice[] = [];
    for (let start = 0; start < members.length; start += MGET_CHUNK) {
      const deviceIds = members.slice(start, start + MGET_CHUNK);
      const keys = deviceIds.map((deviceId) => this.deviceKey(deviceId));
      const raws = await this.send('list', () => this.redis.mget(keys));
      for (let i = 0; i < deviceIds.length; i++) {
        const raw = raws[i];
        const deviceId = deviceIds[i];
        // Expired or unregistered since the index was read.
        if (raw === null || raw === undefined || deviceId === undefined) continue;
        const entry = parseEntry(raw, this.deviceKey(deviceId));
        // A member not yet pruned after the device moved to another account or node.
        if (entry[field] === id) devices.push({ deviceId, entry });
      }
    }
    return devices;
  }

  /** Runs a script by its SHA, loading it on the first NOSCRIPT (new server, SCRIPT FLUSH). */
  private async evalScript(
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    const params = [...keys, ...args];
    try {
      return await this.redis.evalsha(script.sha, keys.length, ...params);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      return await this.redis.eval(script.source, keys.length, ...params);
    }
  }

  /** Runs Redis commands, turning a connection-level failure into {@link RegistryUnavailableError}. */
  private async send<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      const why =
        this.lastError && this.lastError !== err
          ? `${describeError(err)}; last connection error: ${describeError(this.lastError)}`
          : describeError(err);
      throw new RegistryUnavailableError(
        `registry unavailable: Redis at ${this.shownUrl} did not answer ${operation} (${why})`,
        { cause: err },
      );
    }
  }
}

/** Replies that mean "Redis cannot serve now", as opposed to a bug in a command. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN)\b/;

function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // A reply error is Redis answering; anything else (closed connection, stream
  // not writable, timeout, max retries) is Redis not answering.
  if (err.name === 'ReplyError') return UNAVAILABLE_REPLY.test(err.message);
  return true;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && code !== '' ? code : err.message;
}

function parseEntry(raw: string, key: string): RegistryEntry {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = undefined;
  }
  if (typeof value === 'object' && value !== null) {
    const { nodeId, connId, accountId, connectedAtMs, peer } = value as Record<string, unknown>;
    if (
      typeof nodeId === 'string' &&
      typeof connId === 'string' &&
      typeof accountId === 'string' &&
      typeof connectedAtMs === 'number' &&
      (peer === undefined || typeof peer === 'string')
    ) {
      return { nodeId, connId, accountId, connectedAtMs, ...(peer !== undefined && { peer }) };
    }
  }
  throw new Error(
    `malformed registry entry at Redis key '${key}': ${raw.slice(0, 200)}; ` +
      'is another program writing under this key prefix?',
  );
}

function toCount(reply: unknown): number {
  if (typeof reply !== 'number')
    throw new Error(`expected an integer reply from Redis, got ${typeof reply}`);
  return reply;
}

function toOptionalString(reply: unknown): string | undefined {
  if (reply === null) return undefined;
  if (typeof reply !== 'string')
    throw new Error(`expected a string reply from Redis, got ${typeof reply}`);
  return reply;
}

function toIntegers(reply: unknown): number[] {
  if (!Array.isArray(reply) || !reply.every((item) => typeof item === 'number')) {
    throw new Error('expected an array of integers from Redis');
  }
  return reply;
}

function toStrings(reply: unknown): string[] {
  if (!Array.isArray(reply) || !reply.every((item) => typeof item === 'string')) {
    throw new Error('expected an array of strings from Redis');
  }
  return reply;
}
