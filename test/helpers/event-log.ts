/**
 * Records events tagged by `kind` and hands them out in order: `next(kind)`
 * resolves with the next event of that kind not yet taken, whether it was
 * recorded before the call or arrives after. Tests wait on events with it
 * instead of sleeping.
 */
export class EventLog<E extends { kind: string }> {
  readonly events: E[] = [];
  private readonly taken = new Map<E['kind'], number>();
  private readonly waiters: { kind: E['kind']; resolve: (e: E) => void }[] = [];

  /** Records one event and wakes the first waiter for its kind. */
  push(event: E): void {
    this.events.push(event);
    const i = this.waiters.findIndex((w) => w.kind === event.kind);
    if (i === -1) return;
    const [waiter] = this.waiters.splice(i, 1);
    waiter?.resolve(event);
  }

  /** Kinds in recording order. */
  kinds(): E['kind'][] {
    return this.events.map((e) => e.kind);
  }

  /** How many events of `kind` were recorded. */
  count(kind: E['kind']): number {
    return this.events.filter((e) => e.kind === kind).length;
  }

  /** The next not-yet-taken event of `kind`, recorded already or to come. */
  next<K extends E['kind']>(kind: K): Promise<Extract<E, { kind: K }>> {
    const index = this.taken.get(kind) ?? 0;
    this.taken.set(kind, index + 1);
    const existing = this.events.filter((e) => e.kind === kind)[index];
    if (existing !== undefined) return Promise.resolve(existing as Extract<E, { kind: K }>);
    return new Promise((resolve) => {
      this.waiters.push({ kind, resolve: resolve as (e: E) => void });
    });
  }
}
