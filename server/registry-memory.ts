import {
  checkTtlMs,
  type PushRegistry,
  type RefreshItem,
  type RefreshResult,
  type RegisteredDevice,
  type RegistryEntry,
} from './registry.js';

/** Settings of a {@link MemoryRegistry}. */
export interface MemoryRegistryOptions {
  /** The clock TTLs are judged by, epoch ms; tests inject one to expire entries without waiting. Default `Date.now`. */
  nowMs?: () => number;
}

interface Held {
  readonly entry: RegistryEntry;
  expiresAtMs: number;
}

/**
 * The push registry inside one process: the default, for a single node (or
 * several nodes in one process sharing the instance). Every method runs to
 * completion synchronously, so each is trivially atomic.
 *
 * Expiry has no timers: an entry counts as gone once `nowMs() >= expiresAtMs`,
 * which every read checks (and drops what it finds expired); {@link sweep}
 * drops the rest in one pass, for a caller that wants memory back from devices
 * nobody asks about. The account and node indexes are exact: an entry leaves
 * them the moment it is replaced, unregistered or dropped.
 */
export class MemoryRegistry implements PushRegistry {
  private readonly byDevice = new Map<string, Held>();
  private readonly byAccount = new Map<string, Set<string>>();
  private readonly byNode = new Map<string, Set<string>>();
  private readonly nowMs: () => number;

  constructor(options: MemoryRegistryOptions = {}) {
    this.nowMs = options.nowMs ?? Date.now;
  }

  /** Number of entries held, expired ones not yet dropped included. */
  get size(): number {
    return this.byDevice.size;
  }

  async register(
    deviceId: string,
    entry: RegistryEntry,
    ttlMs: number,
  ): Promise<RegistryEntry | undefined> {
    checkTtlMs(ttlMs);
    const now = this.nowMs();
    const previous = this.current(deviceId, now);
    if (previous) this.unindex(deviceId, previous.entry);
    // A copy, so a caller mutating its object cannot change what others read.
    const stored: RegistryEntry = Object.freeze({
      nodeId: entry.nodeId,
      connId: entry.connId,
      accountId: entry.accountId,
      connectedAtMs: entry.connectedAtMs,
      ...(entry.peer !== undefined && { peer: entry.peer }),
    });
    this.byDevice.set(deviceId, { entry: stored, expiresAtMs: now + ttlMs });
    addTo(this.byAccount, stored.accountId, deviceId);
    addTo(this.byNode, stored.nodeId, deviceId);
    return previous && previous.entry.connId !== entry.connId ? previous.entry : undefined;
  }

  async lookup(deviceId: string): Promise<RegistryEntry | undefined> {
    return this.current(deviceId, this.nowMs())?.entry;
  }

  async refresh(items: readonly RefreshItem[], ttlMs: number): Promise<RefreshResult> {
    checkTtlMs(ttlMs);
    const now = this.nowMs();
    const stale: RefreshItem[] = [];
    for (const item of items) {
      const held = this.current(item.deviceId, now);
      if (held?.entry.connId === item.connId) held.expiresAtMs = now + ttlMs;
      else stale.push(item);
    }
    return { refreshed: items.length - stale.length, stale };
  }

  async unregister(deviceId: string, connId: string): Promise<boolean> {
    const held = this.current(deviceId, this.nowMs());
    if (held?.entry.connId !== connId) return false;
    this.drop(deviceId, held.entry);
    return true;
  }

  async accountDevices(accountId: string): Promise<RegisteredDevice[]> {
    return this.list(this.byAccount.get(accountId));
  }

  async nodeDevices(nodeId: string): Promise<RegisteredDevice[]> {
    return this.list(this.byNode.get(nodeId));
  }

  /** Drops every expired entry now; returns how many it dropped. */
  sweep(): number {
    const now = this.nowMs();
    let dropped = 0;
    for (const [deviceId, held] of this.byDevice) {
      if (now < held.expiresAtMs) continue;
      this.drop(deviceId, held.entry);
      dropped++;
    }
    return dropped;
  }

  async close(): Promise<void> {
    this.byDevice.clear();
    this.byAccount.clear();
    this.byNode.clear();
  }

  /** The device's entry if unexpired; drops it if expired. */
  private current(deviceId: string, now: number): Held | undefined {
    const held = this.byDevice.get(deviceId);
    if (!held) return undefined;
    if (now < held.expiresAtMs) return held;
    this.drop(deviceId, held.entry);
    return undefined;
  }

  private list(deviceIds: Set<string> | undefined): RegisteredDevice[] {
    if (!deviceIds) return [];
    const now = this.nowMs();
    const devices: RegisteredDevice[] = [];
    // `current` may drop the device from this very set; a Set tolerates
    // deleting the element being visited.
    for (const deviceId of deviceIds) {
      const held = this.current(deviceId, now);
      if (held) devices.push({ deviceId, entry: held.entry });
    }
    return devices;
  }

  private drop(deviceId: string, entry: RegistryEntry): void {
    this.byDevice.delete(deviceId);
    this.unindex(deviceId, entry);
  }

  private unindex(deviceId: string, entry: RegistryEntry): void {
    removeFrom(this.byAccount, entry.accountId, deviceId);
    removeFrom(this.byNode, entry.nodeId, deviceId);
  }
}

function addTo(index: Map<string, Set<string>>, key: string, deviceId: string): void {
  const members = index.get(key);
  if (members) members.add(deviceId);
  else index.set(key, new Set([deviceId]));
}

function removeFrom(index: Map<string, Set<string>>, key: string, deviceId: string): void {
  const members = index.get(key);
  if (!members) return;
  members.delete(deviceId);
  if (members.size === 0) index.delete(key);
}
