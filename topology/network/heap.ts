/**
 * A binary min-heap ordered by `(atMs, seq)`: entries due at the same time come
 * out in insertion order, which is what keeps relayed bytes in order when two
 * chunks get the same release time.
 */
export class TimeHeap<T> {
  private readonly items: { atMs: number; seq: number; value: T }[] = [];
  private seq = 0;

  /** Number of queued entries. */
  get size(): number {
    return this.items.length;
  }

  /** Queues `value` to come due at `atMs`. */
  push(atMs: number, value: T): void {
    const items = this.items;
    items.push({ atMs, seq: this.seq++, value });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** The earliest due time, or undefined when empty. */
  peekAtMs(): number | undefined {
    return this.items[0]?.atMs;
  }

  /** Removes and returns the earliest entry's value. */
  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    if (!top) return undefined;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.less(l, m)) m = l;
        if (r < items.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top.value;
  }

  /** Drops every entry. */
  clear(): void {
    this.items.length = 0;
  }

  private less(a: number, b: number): boolean {
    const x = this.items[a]!;
    const y = this.items[b]!;
    return x.atMs < y.atMs || (x.atMs === y.atMs && x.seq < y.seq);
  }

  private swap(a: number, b: number): void {
    const items = this.items;
    const t = items[a]!;
    items[a] = items[b]!;
    items[b] = t;
  }
}
