/**
 * Where a device is connected: which node, which connection. The registry is
 * shared by every node, so nothing in it may be host-relative: `connectedAtMs`
 * is wall-clock epoch milliseconds (`Date.now()`), not a monotonic reading.
 */
export interface RegistryEntry {
  /** The node holding the connection. */
  readonly nodeId: string;
  /** Unique per WebSocket upgrade, across nodes and restarts (e.g. a UUID). */
  readonly connId: string;
  /** The account the device belongs to; indexes {@link PushRegistry.accountDevices}. */
  readonly accountId: string;
  /** Wall-clock epoch ms when the upgrade completed. */
  readonly connectedAtMs: number;
  /**
   * Where the holding process takes node-to-node requests directly: `host:port`
   * of its peer link (peer-link.ts). Absent: they go through the broker.
   */
  readonly peer?: string;
}

/** One device of an index listing and the entry that places it. */
export interface RegisteredDevice {
  readonly deviceId: string;
  readonly entry: RegistryEntry;
}

/** One connection whose entry a heartbeat sweep wants to keep alive. */
export interface RefreshItem {
  readonly deviceId: string;
  readonly connId: string;
}

/** What {@link PushRegistry.refresh} found. */
export interface RefreshResult {
  /** How many entries still pointed to their connection and were extended. */
  readonly refreshed: number;
  /**
   * The items whose entry is gone (expired, e.g. during a Redis outage) or held
   * by another connection, in the order given. The node looks each one up: it
   * registers again a device whose entry is gone, and closes a connection that
   * was replaced without its being told.
   */
  readonly stale: RefreshItem[];
}

/**
 * The push registry: device id -> the connection that currently holds it, with
 * a TTL the holding node refreshes while the device stays connected, plus
 * indexes by account and by node. Implementations: `registry-memory.ts` (one
 * process, the default) and `registry-redis.ts` (shared by many nodes);
 * `backends.ts` alone picks between them.
 *
 * Guarantees every implementation keeps (the contract suite checks them):
 * - A device has at most one entry. `register`, `refresh` and `unregister` are
 *   each atomic per device: concurrent calls from any number of nodes behave as
 *   if run one after another, so each entry is replaced at most once and a
 *   replaced entry is returned to exactly one caller.
 * - Removal is compare-and-delete on `connId`. A closing connection that was
 *   already replaced can never remove its successor's entry (Zuul's bug).
 * - TTL: an entry not refreshed for `ttlMs` after its last `register` or
 *   `refresh` is gone — `lookup` misses it and the indexes do not list it. This
 *   is what cleans up after a node that died without unregistering. Expiry is
 *   judged by the backend's clock (Redis: the Redis server's), never a node's.
 * - The indexes never list a device whose entry is gone or now belongs to
 *   another account/node. In Redis they may briefly *hold* such members (they
 *   are filtered on read, pruned on write and read, and the index key itself
 *   expires), so memory stays bounded without a background job.
 *
 * Caller obligations: `ttlMs` is a positive integer; the node closes the
 * connection named by the entry `register` returns (on its own node directly,
 * on another node by telling it) — the registry only records who holds what.
 * Runtime backend failures reject with `RegistryUnavailableError` (core/errors.ts).
 */
export interface PushRegistry {
  /**
   * Records that `deviceId` is now held by `entry`, expiring after `ttlMs`.
   * Resolves with the entry it replaced — another connection of the same device,
   * possibly on another node, which the caller must close — or `undefined` when
   * there was none (re-registering the same `connId` is not a replacement).
   */
  register(
    deviceId: string,
    entry: RegistryEntry,
    ttlMs: number,
  ): Promise<RegistryEntry | undefined>;
  /** The device's current, unexpired entry, if any. */
  lookup(deviceId: string): Promise<RegistryEntry | undefined>;
  /**
   * Extends to `ttlMs` the entries that still point to these connections; items
   * whose device is gone or held by another connection are skipped. One call per
   * heartbeat sweep for many devices (one round trip per few hundred in Redis).
   * Resolves with how many were still current and which were not.
   */
  refresh(items: readonly RefreshItem[], ttlMs: number): Promise<RefreshResult>;
  /** Compare-and-delete: removes the entry only if it still points to `connId`; resolves with whether it did. */
  unregister(deviceId: string, connId: string): Promise<boolean>;
  /** Online devices of an account (unexpired entries), across nodes, in no particular order. */
  accountDevices(accountId: string): Promise<RegisteredDevice[]>;
  /** Every unexpired entry a node holds (for draining, or cleanup after a node dies), in no particular order. */
  nodeDevices(nodeId: string): Promise<RegisteredDevice[]>;
  /** Releases the backend (the Redis connection); the registry must not be used afterwards. */
  close(): Promise<void>;
  /**
   * Calls `listener` each time the backend is reachable again after losing its
   * connection (Redis: every `ready` after the first). What it held may be gone
   * (a restart without persistence), so the node re-checks every entry it owns.
   * Backends that cannot lose their state (in process) do not have it.
   */
  onReconnect?(listener: () => void): void;
}

/** Settings of a registry; each says which backend reads it and its default ({@link registryDefaults}). */
export interface RegistryOptions {
  /** Redis: prefix of every key. Default `pushbench:`. */
  keyPrefix?: string;
  /** Redis: a command with no reply after this long fails with `RegistryUnavailableError`. Default 2000 ms. */
  commandTimeoutMs?: number;
  /** Redis: how long to wait for the TCP connection. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Memory: the clock TTLs are judged by, epoch ms. Default `Date.now`. */
  nowMs?: () => number;
}

/** Defaults for {@link RegistryOptions}, the one table the backends fill from. */
export const registryDefaults = {
  keyPrefix: 'pushbench:',
  commandTimeoutMs: 2000,
  connectTimeoutMs: 2000,
} as const;

/** Throws a `RangeError` unless `ttlMs` is a positive integer (shared by the backends). */
export function checkTtlMs(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`registry TTL must be a positive integer of milliseconds, got ${ttlMs}`);
  }
}
