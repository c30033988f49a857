import type { PushRegistry, RegistryEntry } from './registry.js';

/** Outcomes a `d2d_status` frame reports. */
export type D2dOutcome =
  | 'delivered'
  | 'not_connected'
  | 'forbidden'
  | 'rate_limited'
  | 'unavailable';

/**
 * Device-to-device target lookups through a cache with a TTL: repeat messages
 * to the same target skip the registry (Pushy's cached target lookups). An
 * expired entry is still answered while one lookup in the background renews it
 * (stale while revalidating), so a steady conversation never waits on the
 * registry, however slow it is. An entry is dropped as soon as delivery
 * through it fails (the device moved or left), and the caller looks again.
 */
export class TargetCache {
  private readonly entries = new Map<
    string,
    { entry: RegistryEntry | undefined; expiresMs: number }
  >();
  /** Lookups answered from the cache. */
  hits = 0;
  /** Lookups that went to the registry. */
  misses = 0;
  /** Targets whose expired entry is being renewed in the background. */
  private readonly renewing = new Set<string>();

  constructor(
    private readonly registry: PushRegistry,
    private readonly ttlMs: number,
    private readonly nowMs: () => number,
    private readonly maxEntries = 100_000,
  ) {}

  /** The target's registry entry (undefined: not connected anywhere). */
  async lookup(deviceId: string): Promise<RegistryEntry | undefined> {
    const now = this.nowMs();
    const cached = this.entries.get(deviceId);
    if (cached) {
      this.hits++;
      if (cached.expiresMs <= now) this.renew(deviceId);
      return cached.entry;
    }
    this.misses++;
    const entry = await this.registry.lookup(deviceId);
    // A TTL of 0 turns the cache off: every message asks the registry.
    if (this.ttlMs <= 0) return entry;
    this.store(deviceId, entry);
    return entry;
  }

  /** One background lookup of an expired target; a failure leaves the old entry to the next message. */
  private renew(deviceId: string): void {
    if (this.renewing.has(deviceId)) return;
    this.renewing.add(deviceId);
    this.registry
      .lookup(deviceId)
      .then(
        (entry) => {
          // Dropped meanwhile (a failed delivery): the caller's fresh lookup stored what is true.
          if (this.entries.has(deviceId)) this.store(deviceId, entry);
        },
        () => {},
      )
      .finally(() => this.renewing.delete(deviceId));
  }

  private store(deviceId: string, entry: RegistryEntry | undefined): void {
    const now = this.nowMs();
    this.entries.delete(deviceId);
    if (this.entries.size >= this.maxEntries) {
      // Bounded: drop the oldest insertion (Map keeps insertion order).
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(deviceId, { entry, expiresMs: now + this.ttlMs });
  }

  /** Forgets a target, e.g. after a delivery through its cached entry failed. */
  invalidate(deviceId: string): void {
    this.entries.delete(deviceId);
  }
}

/**
 * Whether a device of `fromAccount` may message a device of `toAccount`: the
 * same account always may; otherwise only accounts on the source's allow-list.
 */
export function d2dAllowed(
  fromAccount: string,
  toAccount: string,
  allow: ReadonlyMap<string, ReadonlySet<string>>,
): boolean {
  return fromAccount === toAccount || (allow.get(fromAccount)?.has(toAccount) ?? false);
}

/** Parses `--d2d-allow a1=a2,a3` entries into an allow-list map. */
export function parseD2dAllow(specs: readonly string[]): Map<string, Set<string>> {
  const map = new Map<string, Set<string>>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new RangeError(`--d2d-allow needs account=target1,target2, got "${spec}"`);
    const from = spec.slice(0, eq);
    const set = map.get(from) ?? new Set<string>();
    for (const to of spec.slice(eq + 1).split(',')) if (to) set.add(to);
    map.set(from, set);
  }
  return map;
}
