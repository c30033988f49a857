import { createHash, randomUUID } from 'node:crypto';
import { Command, Redis, type RedisOptions } from 'ioredis';
import { BrokerUnavailableError, QueueFullError } from '../core/errors.js';
import {
  type Broker,
  type BrokerOptions,
  brokerDefaults,
  type ChannelHandler,
  checkAppendOptions,
  checkConsumeOptions,
  checkInteger,
  checkSince,
  type QueuedMessage,
  type RoomHistory,
  type RoomMessage,
} from './broker.js';
import { redactUrl } from './redis-url.js';

/**
 * Settings of a {@link RedisBroker}: the broker's options (documented in
 * broker.ts, defaults in `brokerDefaults`) less the memory-only clock, plus the URL.
 */
export type RedisBrokerOptions = Omit<BrokerOptions, 'nowMs'> & {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. */
  url: string;
};

/** A Lua script run by EVALSHA, falling back to EVAL once when Redis lacks it. */
interface LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

function lua(name: string, source: string): LuaScript {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Appends to a room in one step. A missing epoch key means the room's history is
 * new or was lost (expired, Redis restarted without it): a fresh epoch is set and
 * any leftover counter or log is dropped, so offsets restart at 1 under the new epoch.
 * KEYS: epoch, seq, log. ARGV: data, maxLength, ttlMs, candidate epoch.
 * Returns {offset, epoch}.
 */
/**
 * Adds a message to the queue unless it holds `max` (acknowledged entries are
 * deleted, so XLEN is waiting + in flight). KEYS: stream. ARGV: max, field,
 * data. Returns the entry id, or nil when full.
 */
const ENQUEUE = lua(
  'enqueue',
  `if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3])`,
);

const APPEND = lua(
  'append',
  `local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch, 'NX')
  redis.call('DEL', KEYS[2], KEYS[3])
end
local offset = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {offset, epoch}`,
);

/**
 * Reads a room in one step, creating its epoch if it has none. A room with no
 * message in its epoch lives for the empty-room TTL from its last read, so clients
 * that read a quiet room keep a resume point as long as somebody reads it. The log holds the newest offsets contiguously, so the oldest kept offset
 * is top - LLEN + 1.
 * KEYS: epoch, seq, log. ARGV: candidate epoch, empty-room TTL ms, '1' if a resume
 * point was given, its epoch, its offset.
 * Returns {epoch, top, complete 0/1, offset of the first returned message, {data...}}.
 */
const HISTORY = lua(
  'history',
  `local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch, 'PX', ARGV[2])
  redis.call('DEL', KEYS[2], KEYS[3])
end
local top = tonumber(redis.call('GET', KEYS[2]) or '0')
if top == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local oldest = top - redis.call('LLEN', KEYS[3]) + 1
local after = tonumber(ARGV[5])
local from = 0
local complete = 0
if (ARGV[3] ~= '1' or ARGV[4] == epoch) and after <= top and after >= oldest - 1 then
  complete = 1
  from = after - oldest + 1
end
return {epoch, top, complete, oldest + from, redis.call('LRANGE', KEYS[3], from, -1)}`,
);

/**
 * Claims queue entries idle for at least min-idle ms and reports each one's
 * delivery count (XAUTOCLAIM increments it but does not return it). Entries
 * deleted while pending come back as false on Redis 6.2 and are skipped.
 * KEYS: stream. ARGV: group, consumer, min-idle ms, cursor, count.
 * Returns {next cursor, {id, {field, value...}, deliveries}...}.
 */
const CLAIM = lua(
  'claim',
  `local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {r[1]}
for _, e in ipairs(r[2]) do
  if e then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 1
    if p[1] then n = p[1][4] end
    out[#out + 1] = {e[1], e[2], n}
  end
end
return out`,
);

/** ReplyErrors that mean "Redis cannot serve right now", not "this command is wrong". */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

/** The stream entry field that holds the message. */
const DATA_FIELD = 'd';

/**
 * The broker for a cluster of nodes, over Redis ≥ 6.2 (XAUTOCLAIM).
 *
 * Key layout (P = `keyPrefix`, default `pushbench:`):
 * - `P` + `ch:<channel>` — pub/sub channel (not a key).
 * - `P` + `room:{<room>}:epoch` — string, the room history's epoch (a UUID).
 * - `P` + `room:{<room>}:seq` — integer, offset of the newest message.
 * - `P` + `room:{<room>}:log` — list of the newest `maxLength` messages, oldest first.
 *   The three room keys share a TTL refreshed on every append; the `{room}` hash
 *   tag keeps them in one slot.
 * - `P` + `queue` — stream of queued messages (field `d`), consumer group `queueGroup`;
 *   an acknowledged entry is deleted, so XLEN counts waiting + in flight.
 * - `P` + `queue:dead` — list of dead letters as JSON `{id,data,reason,attempts}`, newest first.
 *
 * Connections: one for commands, one in subscriber mode (Redis requires it), and
 * one per consumer name for the blocking XREADGROUP, so a consumer waiting up to
 * `blockMs` neither stalls other commands nor other consumers in the process.
 * Consumer names are meant to be few and long-lived (one per processor).
 *
 * Failure behaviour: commands fail fast while Redis is unreachable (no offline
 * queue, no resend of unanswered commands, `commandTimeoutMs` per command) with a
 * one-line {@link BrokerUnavailableError}; the connections keep reconnecting in the
 * background and the subscriber connection resubscribes by itself. Messages
 * published while a subscriber is disconnected are lost — room history is how
 * clients recover them.
 */
export class RedisBroker implements Broker {
  private readonly prefix: string;
  private readonly queueKey: string;
  private readonly deadKey: string;
  private readonly group: string;
  private readonly commandTimeoutMs: number;
  private readonly emptyRoomTtlMs: number;
  private readonly maxQueueLength: number;
  private readonly maxDeadLetters: number;
  private readonly safeUrl: string;
  /** channel key -> handlers, and the SUBSCRIBE that activates them. */
  private readonly channels = new Map<
    string,
    { handlers: Set<ChannelHandler>; ready: Promise<void> }
  >();
  /** consumer name -> its connection for blocking reads. */
  private readonly blockers = new Map<string, Promise<Redis>>();
  /** Where the next XAUTOCLAIM scan of the pending entries starts. */
  private claimCursor = '0-0';
  private lastConnectionError: unknown;
  private closed = false;

  private constructor(
    private readonly cmd: Redis,
    private readonly sub: Redis,
    options: RedisBrokerOptions,
  ) {
    this.prefix = options.keyPrefix ?? brokerDefaults.keyPrefix;
    this.queueKey = `${this.prefix}queue`;
    this.deadKey = `${this.prefix}queue:dead`;
    this.group = options.queueGroup ?? brokerDefaults.queueGroup;
    this.commandTimeoutMs = options.commandTimeoutMs ?? brokerDefaults.commandTimeoutMs;
    this.emptyRoomTtlMs = options.emptyRoomTtlMs ?? brokerDefaults.emptyRoomTtlMs;
    this.maxQueueLength = options.maxQueueLength ?? brokerDefaults.maxQueueLength;
    this.maxDeadLetters = options.maxDeadLetters ?? brokerDefaults.maxDeadLetters;
    this.safeUrl = redactUrl(options.url);
    const remember = (err: unknown) => {
      this.lastConnectionError = err;
    };
    cmd.on('error', remember);
    sub.on('error', remember);
    sub.on('message', (channel: string, message: string) => this.dispatch(channel, message));
  }

  /**
   * Connects the command and subscriber connections, PINGs, checks the server
   * version and creates the queue's consumer group. Rejects with a one-line
   * {@link BrokerUnavailableError} ("cannot reach Redis at URL: ECONNREFUSED").
   */
  static async connect(options: RedisBrokerOptions): Promise<RedisBroker> {
    const commandTimeoutMs = options.commandTimeoutMs ?? brokerDefaults.commandTimeoutMs;
    const connectTimeoutMs = options.connectTimeoutMs ?? brokerDefaults.connectTimeoutMs;
    checkInteger('commandTimeoutMs', commandTimeoutMs, 1);
    checkInteger('connectTimeoutMs', connectTimeoutMs, 1);
    checkInteger('emptyRoomTtlMs', options.emptyRoomTtlMs ?? 1, 1);
    checkInteger('maxQueueLength', options.maxQueueLength ?? 1, 1);
    checkInteger('maxDeadLetters', options.maxDeadLetters ?? 1, 1);
    const redisOptions: RedisOptions = {
      lazyConnect: true,
      // Fail fast instead of queueing while disconnected: callers answer 503.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // A command sent just before the connection dropped may or may not have run;
      // resending it could append or enqueue twice, so it fails instead.
      autoResendUnfulfilledCommands: false,
      connectTimeout: connectTimeoutMs,
      commandTimeout: commandTimeoutMs,
      retryStrategy: (times) => Math.min(times * 50, 200),
    };
    const cmd = new Redis(options.url, redisOptions);
    const sub = cmd.duplicate();
    let firstError: unknown;
    // Stays attached: without an 'error' listener ioredis logs every failed reconnect.
    const onError = (err: unknown) => {
      firstError ??= err;
    };
    cmd.on('error', onError);
    sub.on('error', onError);
    const safeUrl = redactUrl(options.url);
    let persistence: string | undefined;
    try {
      await cmd.connect();
      await cmd.ping();
      const version = /redis_version:(\d+)\.(\d+)/.exec(String(await cmd.info('server')));
      const major = Number(version?.[1] ?? 0);
      const minor = Number(version?.[2] ?? 0);
      if (major < 6 || (major === 6 && minor < 2)) {
        throw new BrokerUnavailableError(
          `Redis at ${safeUrl} is version ${major}.${minor}; the broker needs 6.2 or newer (XAUTOCLAIM)`,
        );
      }
      persistence = await persistenceOf(cmd, safeUrl);
      await sub.connect();
    } catch (err) {
      cmd.disconnect();
      sub.disconnect();
      if (err instanceof BrokerUnavailableError) throw err;
      const reason = errorCode(firstError ?? err);
      const wrapped = new BrokerUnavailableError(`cannot reach Redis at ${safeUrl}: ${reason}`);
      wrapped.cause = err;
      throw wrapped;
    }
    const broker = new RedisBroker(cmd, sub, options);
    broker.persistenceWarning = persistence;
    try {
      await broker.run('create the queue group', () => broker.ensureGroup());
    } catch (err) {
      await broker.close();
      throw err;
    }
    return broker;
  }

  async publish(channel: string, data: string): Promise<void> {
    await this.run('publish', () => this.cmd.call('PUBLISH', [this.channelKey(channel), data]));
  }

  async subscribe(channel: string, handler: ChannelHandler): Promise<void> {
    const key = this.channelKey(channel);
    let entry = this.channels.get(key);
    if (entry === undefined) {
      this.ensureOpen('subscribe');
      const handlers = new Set<ChannelHandler>();
      const ready = this.sub.subscribe(key).then(
        () => undefined,
        (err: unknown) => {
          // Forget the half-made subscription unless unsubscribe/subscribe replaced it.
          if (this.channels.get(key)?.handlers === handlers) this.channels.delete(key);
          throw err;
        },
      );
      entry = { handlers, ready };
      this.channels.set(key, entry);
    }
    entry.handlers.add(handler);
    await this.run('subscribe', () => entry.ready);
  }

  async unsubscribe(channel: string): Promise<void> {
    const key = this.channelKey(channel);
    // Handlers go first: whatever arrives before Redis confirms is dropped.
    if (!this.channels.delete(key)) return;
    await this.run('unsubscribe', () => this.sub.unsubscribe(key));
  }

  async appendHistory(
    room: string,
    data: string,
    opts: { maxLength: number; ttlMs: number },
  ): Promise<{ offset: number; epoch: string }> {
    checkAppendOptions(opts);
    const reply = await this.run('appendHistory', () =>
      this.eval(APPEND, this.roomKeys(room), [data, opts.maxLength, opts.ttlMs, randomUUID()]),
    );
    const [offset, epoch] = array(reply, 'append');
    return { offset: integer(offset, 'append offset'), epoch: text(epoch, 'append epoch') };
  }

  async history(room: string, since?: { offset: number; epoch: string }): Promise<RoomHistory> {
    checkSince(since);
    const args =
      since === undefined
        ? [randomUUID(), this.emptyRoomTtlMs, '0', '', 0]
        : [randomUUID(), this.emptyRoomTtlMs, '1', since.epoch, since.offset];
    const reply = await this.run('history', () => this.eval(HISTORY, this.roomKeys(room), args));
    const [epoch, top, complete, first, datas] = array(reply, 'history');
    const firstOffset = integer(first, 'history first offset');
    const messages: RoomMessage[] = array(datas, 'history messages').map((d, i) => ({
      offset: firstOffset + i,
      data: text(d, 'history message'),
    }));
    return {
      epoch: text(epoch, 'history epoch'),
      offset: integer(top, 'history offset'),
      messages,
      complete: integer(complete, 'history complete') === 1,
    };
  }

  /** What a restart of this Redis would lose, when it persists too little; read at connect. */
  persistenceWarning: string | undefined;

  async enqueue(data: string): Promise<string> {
    const id = await this.run('enqueue', () =>
      this.eval(ENQUEUE, [this.queueKey], [this.maxQueueLength, DATA_FIELD, data]),
    );
    // Full: refused, not trimmed (`XADD MAXLEN` would drop accepted messages unseen).
    if (id === null) {
      throw new QueueFullError(`the queue holds its maximum of ${this.maxQueueLength} messages`);
    }
    return text(id, 'XADD id');
  }

  async consume(
    consumer: string,
    opts: { count: number; blockMs: number; retryAfterMs: number },
  ): Promise<QueuedMessage[]> {
    checkConsumeOptions(consumer, opts);
    this.ensureOpen('consume');
    try {
      const claimed = await this.run('consume', () =>
        this.withGroup(() => this.claimDue(consumer, opts.count, opts.retryAfterMs)),
      );
      if (claimed.length >= opts.count) return claimed;
      // Retries found: hand them over now rather than block for more.
      const blockMs = claimed.length > 0 ? 0 : opts.blockMs;
      const fresh = await this.run('consume', () =>
        this.withGroup(() => this.readNew(consumer, opts.count - claimed.length, blockMs)),
      );
      return claimed.concat(fresh);
    } catch (err) {
      // close() during a blocked read ends it quietly, like the memory broker.
      if (this.closed && !(err instanceof RangeError)) return [];
      throw err;
    }
  }

  async ack(id: string): Promise<void> {
    await this.run('ack', async () =>
      checkExec(
        await this.cmd.multi().xack(this.queueKey, this.group, id).xdel(this.queueKey, id).exec(),
        'ack',
      ),
    );
  }

  async deadLetter(message: QueuedMessage, reason: string): Promise<void> {
    const entry = JSON.stringify({
      id: message.id,
      data: message.data,
      reason,
      attempts: message.attempts,
    });
    await this.run('deadLetter', async () =>
      checkExec(
        await this.cmd
          .multi()
          .lpush(this.deadKey, entry)
          .ltrim(this.deadKey, 0, this.maxDeadLetters - 1)
          .xack(this.queueKey, this.group, message.id)
          .xdel(this.queueKey, message.id)
          .exec(),
        'deadLetter',
      ),
    );
  }

  async queueDepth(): Promise<{ pending: number; deadLetters: number }> {
    const [pending, deadLetters] = await this.run('queueDepth', async () =>
      checkExec(await this.cmd.multi().xlen(this.queueKey).llen(this.deadKey).exec(), 'queueDepth'),
    );
    return {
      pending: integer(pending, 'XLEN'),
      deadLetters: integer(deadLetters, 'LLEN'),
    };
  }

  async deadLetters(
    limit: number,
  ): Promise<{ id: string; data: string; reason: string; attempts: number }[]> {
    checkInteger('deadLetters limit', limit, 0);
    if (limit === 0) return [];
    const raw = await this.run('deadLetters', () =>
      this.cmd.lrange(this.deadKey, 0, Math.min(limit, this.maxDeadLetters) - 1),
    );
    const out: { id: string; data: string; reason: string; attempts: number }[] = [];
    for (const line of raw) {
      const entry = parseDeadLetter(line);
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }

  /** Closes every connection; a `consume` blocked at that moment resolves `[]`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.channels.clear();
    const blockers = [...this.blockers.values()];
    this.blockers.clear();
    this.cmd.disconnect();
    this.sub.disconnect();
    for (const pending of blockers) {
      await pending.then(
        (conn) => conn.disconnect(),
        () => {},
      );
    }
  }

  private channelKey(channel: string): string {
    return `${this.prefix}ch:${channel}`;
  }

  private roomKeys(room: string): string[] {
    const base = `${this.prefix}room:{${room}}`;
    return [`${base}:epoch`, `${base}:seq`, `${base}:log`];
  }

  private dispatch(channelKey: string, data: string): void {
    const entry = this.channels.get(channelKey);
    if (entry === undefined) return;
    let failure: { error: unknown } | undefined;
    for (const handler of [...entry.handlers]) {
      try {
        handler(data);
      } catch (error) {
        failure ??= { error };
      }
    }
    // Handlers must not throw; surface it without starving the other handlers.
    if (failure !== undefined) {
      const { error } = failure;
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private async eval(
    script: LuaScript,
    keys: string[],
    args: (string | number)[],
  ): Promise<unknown> {
    try {
      return await this.cmd.call('EVALSHA', [script.sha, keys.length, ...keys, ...args]);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      return await this.cmd.call('EVAL', [script.source, keys.length, ...keys, ...args]);
    }
  }

  /** Creates the consumer group (and stream); false when it existed (another node made it). */
  private async ensureGroup(): Promise<boolean> {
    try {
      await this.cmd.call('XGROUP', ['CREATE', this.queueKey, this.group, '0', 'MKSTREAM']);
      return true;
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
      return false;
    }
  }

  private readonly queueLostListeners: Array<() => void> = [];

  onQueueLost(listener: () => void): void {
    this.queueLostListeners.push(listener);
  }

  /** Runs `fn`; if the group is gone (Redis lost its data, or the key was deleted), recreates it and runs `fn` once more. */
  private async withGroup<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOGROUP'))) throw err;
      // The group this broker made or found at start is gone: Redis lost the queue.
      if (await this.ensureGroup()) for (const listener of this.queueLostListeners) listener();
      return await fn();
    }
  }

  private async claimDue(
    consumer: string,
    count: number,
    retryAfterMs: number,
  ): Promise<QueuedMessage[]> {
    const reply = array(
      await this.eval(
        CLAIM,
        [this.queueKey],
        [this.group, consumer, retryAfterMs, this.claimCursor, count],
      ),
      'claim',
    );
    this.claimCursor = text(reply[0], 'XAUTOCLAIM cursor');
    const out: QueuedMessage[] = [];
    for (let i = 1; i < reply.length; i++) {
      const [id, fields, deliveries] = array(reply[i], 'claimed entry');
      out.push({
        id: text(id, 'claimed id'),
        data: fieldValue(fields, DATA_FIELD),
        attempts: integer(deliveries, 'delivery count'),
      });
    }
    return out;
  }

  private async readNew(
    consumer: string,
    count: number,
    blockMs: number,
  ): Promise<QueuedMessage[]> {
    const args: (string | number)[] = ['GROUP', this.group, consumer, 'COUNT', count];
    let reply: unknown;
    if (blockMs === 0) {
      // BLOCK 0 would mean "forever"; without BLOCK it returns at once.
      reply = await this.cmd.call('XREADGROUP', [...args, 'STREAMS', this.queueKey, '>']);
    } else {
      const conn = await this.blocker(consumer);
      // A per-command timeout: the connection has none, since any fixed one would
      // either cut long blocks short or let a dead Redis hang short ones.
      const command = new Command(
        'xreadgroup',
        [...args, 'BLOCK', blockMs, 'STREAMS', this.queueKey, '>'],
        { replyEncoding: 'utf8' },
      );
      command.setTimeout(blockMs + this.commandTimeoutMs);
      conn.sendCommand(command);
      try {
        reply = await command.promise;
      } catch (err) {
        if (err instanceof Error && err.message === 'Command timed out') {
          // Silent connection: drop it so the next call starts a fresh one.
          this.blockers.delete(consumer);
          conn.disconnect();
        }
        throw err;
      }
    }
    if (reply === null) return [];
    const out: QueuedMessage[] = [];
    for (const stream of array(reply, 'XREADGROUP')) {
      const [, entries] = array(stream, 'XREADGROUP stream');
      for (const entry of array(entries, 'XREADGROUP entries')) {
        const [id, fields] = array(entry, 'XREADGROUP entry');
        out.push({ id: text(id, 'entry id'), data: fieldValue(fields, DATA_FIELD), attempts: 1 });
      }
    }
    return out;
  }

  /** The consumer's blocking connection, connected on first use. */
  private blocker(consumer: string): Promise<Redis> {
    let pending = this.blockers.get(consumer);
    if (pending === undefined) {
      const conn = this.cmd.duplicate({ commandTimeout: undefined });
      conn.on('error', (err: unknown) => {
        this.lastConnectionError = err;
      });
      pending = conn.connect().then(
        () => conn,
        (err: unknown) => {
          this.blockers.delete(consumer);
          conn.disconnect();
          throw err;
        },
      );
      this.blockers.set(consumer, pending);
    }
    return pending;
  }

  private ensureOpen(what: string): void {
    if (this.closed) throw new BrokerUnavailableError(`${what}() called on a closed Redis broker`);
  }

  /** Runs one Redis operation, turning connection trouble into {@link BrokerUnavailableError}. */
  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.ensureOpen(what);
    try {
      return await fn();
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      const wrapped = new BrokerUnavailableError(
        `Redis at ${this.safeUrl} is unavailable (${this.describe(err)}); ${what} failed, the broker keeps reconnecting`,
      );
      wrapped.cause = err;
      throw wrapped;
    }
  }

  private describe(err: unknown): string {
    const message = err instanceof Error ? err.message : String(err);
    if (message.startsWith("Stream isn't writeable")) {
      const last = this.lastConnectionError;
      return last === undefined ? 'not connected' : `not connected: ${errorCode(last)}`;
    }
    if (message === 'Command timed out') return `no reply within ${this.commandTimeoutMs} ms`;
    if (message.startsWith('Reached the max retries')) return 'connection lost';
    return errorCode(err);
  }
}

/** Redis answered something this code does not expect: a bug or a foreign key, not an outage. */
class ReplyShapeError extends Error {
  constructor(what: string, value: unknown) {
    super(`unexpected Redis reply for ${what}: ${JSON.stringify(value)?.slice(0, 200)}`);
    this.name = 'ReplyShapeError';
  }
}

function isUnavailable(err: unknown): boolean {
  if (err instanceof BrokerUnavailableError) return false; // already translated
  if (!(err instanceof Error)) return true;
  if (err.name === 'ReplyError') return TRANSIENT_REPLY.test(err.message);
  return !(err instanceof RangeError || err instanceof ReplyShapeError);
}

/** A system error's code (`ECONNREFUSED`), else its first message line. */
function errorCode(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    return err.message.split('\n')[0] ?? err.name;
  }
  return String(err);
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new ReplyShapeError(what, value);
  return value;
}

function text(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  throw new ReplyShapeError(what, value);
}

function integer(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  throw new ReplyShapeError(what, value);
}

/** The value of `name` in a stream entry's flat [field, value, ...] list. */
function fieldValue(fields: unknown, name: string): string {
  const list = array(fields, 'stream entry fields');
  for (let i = 0; i + 1 < list.length; i += 2) {
    if (text(list[i], 'field name') === name) return text(list[i + 1], 'field value');
  }
  throw new ReplyShapeError(`stream entry field '${name}'`, fields);
}

/** The results of a MULTI, or the first error in it. */
function checkExec(replies: [Error | null, unknown][] | null, what: string): unknown[] {
  if (replies === null) throw new ReplyShapeError(`${what} (transaction aborted)`, null);
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

function parseDeadLetter(
  line: string,
): { id: string; data: string; reason: string; attempts: number } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { id, data, reason, attempts } = value as Record<string, unknown>;
  if (
    typeof id !== 'string' ||
    typeof data !== 'string' ||
    typeof reason !== 'string' ||
    typeof attempts !== 'number'
  ) {
    return undefined;
  }
  return { id, data, reason, attempts };
}

/**
 * What a restart of the Redis behind `cmd` would lose of the queue: undefined
 * with an append-only file; else a line saying so (snapshots only, or nothing).
 * Where INFO or CONFIG is not allowed (managed services), nothing is said.
 */
async function persistenceOf(cmd: Redis, safeUrl: string): Promise<string | undefined> {
  try {
    const info = String(await cmd.info('persistence'));
    if (/aof_enabled:1/.test(info)) return undefined;
    let save = '';
    try {
      const reply = (await cmd.call('CONFIG', ['GET', 'save'])) as unknown[];
      save = String(reply[1] ?? '').trim();
    } catch {
      return undefined;
    }
    return save !== ''
      ? `Redis at ${safeUrl} has no append-only file (snapshots only, save "${save}"): a restart loses the queued messages accepted since its last snapshot`
      : `Redis at ${safeUrl} persists nothing (no append-only file, no snapshots): a restart loses every queued message`;
  } catch {
    return undefined;
  }
}
