/**
 * The delivery ledger. The publisher numbers messages 0..sent-1 and marks which
 * were accepted; devices mark which arrived before the delivery deadline. Both
 * sides keep bitsets (one bit per message) and the coordinator joins them once
 * at the end, so `delivered + lost == accepted` holds by construction.
 */

/** A growable set of non-negative integers, one bit each; cheap to send between threads. */
export class Bitset {
  private bits: Uint8Array;

  constructor(bytes?: Uint8Array) {
    this.bits = bytes ?? new Uint8Array(1024);
  }

  /** Adds `i`; returns false if it was already present. */
  add(i: number): boolean {
    const byte = i >>> 3;
    if (byte >= this.bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (i & 7);
    const current = this.bits[byte] ?? 0;
    if (current & mask) return false;
    this.bits[byte] = current | mask;
    return true;
  }

  /** True if `i` is present. */
  has(i: number): boolean {
    return (((this.bits[i >>> 3] ?? 0) >> (i & 7)) & 1) === 1;
  }

  /** Adds every member of `other`. */
  addAll(other: Bitset): void {
    const src = other.bits;
    if (src.length > this.bits.length) {
      const grown = new Uint8Array(src.length);
      grown.set(this.bits);
      this.bits = grown;
    }
    for (let i = 0; i < src.length; i++) this.bits[i] = (this.bits[i] ?? 0) | (src[i] ?? 0);
  }

  /** Number of members. */
  count(): number {
    let n = 0;
    for (const b of this.bits) n += popcount8[b] ?? 0;
    return n;
  }

  /** Members of this set that are also in `other`. */
  countAnd(other: Bitset): number {
    let n = 0;
    const len = Math.min(this.bits.length, other.bits.length);
    for (let i = 0; i < len; i++) n += popcount8[(this.bits[i] ?? 0) & (other.bits[i] ?? 0)] ?? 0;
    return n;
  }

  /** A new set holding the members of this set that are also in `other`. */
  and(other: Bitset): Bitset {
    const len = Math.min(this.bits.length, other.bits.length);
    const out = new Uint8Array(Math.max(len, 1));
    for (let i = 0; i < len; i++) out[i] = (this.bits[i] ?? 0) & (other.bits[i] ?? 0);
    return new Bitset(out);
  }

  /** Calls `fn` for each member, in increasing order. */
  forEach(fn: (i: number) => void): void {
    for (let byte = 0; byte < this.bits.length; byte++) {
      let b = this.bits[byte] ?? 0;
      while (b) {
        const low = b & -b;
        fn(byte * 8 + (31 - Math.clz32(low)));
        b ^= low;
      }
    }
  }

  /** The raw bytes, for postMessage. */
  toBytes(): Uint8Array {
    return this.bits;
  }
}

const popcount8 = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v; v &= v - 1) n++;
  return n;
});

/** The publisher's side of the ledger. */
export interface PublisherCounts {
  /** Requests issued. */
  sent: number;
  /** Which message numbers got a 2xx. */
  accepted: Bitset;
  /** Non-2xx answers by status, plus `no_answer` for transport errors and timeouts. */
  rejectedByStatus: Record<string, number>;
}

/** The devices' side of the ledger, merged over workers. */
export interface DeviceCounts {
  /** Message numbers that arrived (first time) before the delivery deadline. */
  delivered: Bitset;
  /** Message numbers that first arrived after the deadline. */
  late: Bitset;
  /** Arrivals of a message id the device had already seen. */
  duplicates: number;
}

/** The delivery ledger as reported. Invariants: `delivered + lost == accepted`, `accepted + rejected == sent`. */
export interface DeliveryLedger {
  sent: number;
  accepted: number;
  delivered: number;
  lost: number;
  rejected: number;
  rejectedByStatus: Record<string, number>;
  duplicates: number;
  /** Accepted messages that arrived, but after the deadline (a subset of `lost`). */
  late: number;
  /** Messages that arrived although the publisher saw no 2xx (e.g. its request timed out). */
  unconfirmed: number;
  /** delivered / accepted; 1 when nothing was accepted. */
  rate: number;
}

/** Joins both sides into the ledger. */
export function reconcileLedger(pub: PublisherCounts, dev: DeviceCounts): DeliveryLedger {
  const accepted = pub.accepted.count();
  const delivered = pub.accepted.countAnd(dev.delivered);
  const rejected = Object.values(pub.rejectedByStatus).reduce((a, b) => a + b, 0);
  return {
    sent: pub.sent,
    accepted,
    delivered,
    lost: accepted - delivered,
    rejected,
    rejectedByStatus: { ...pub.rejectedByStatus },
    duplicates: dev.duplicates,
    late: pub.accepted.countAnd(dev.late),
    unconfirmed: dev.delivered.count() - delivered,
    rate: accepted === 0 ? 1 : delivered / accepted,
  };
}

/**
 * The publisher's side of a fan-out ledger (room messages): message `r` was
 * accepted once but owes `fanOut(r)` deliveries, one per member.
 */
export interface FanOutPublisherCounts {
  /** Messages issued. */
  sent: Bitset;
  /** Messages accepted. */
  accepted: Bitset;
  /** Rejected messages by status (counted in messages, not deliveries). */
  rejectedByStatus: Record<string, number>;
  /** Deliveries message `r` owes (its room's member count). */
  fanOut(r: number): number;
}

/** The devices' side of a fan-out ledger: distinct members reached per message, summed over workers. */
export interface FanOutDeviceCounts {
  /** `delivered[r]`: members that got message r (first time) before the deadline. */
  delivered: Uint32Array;
  /** `late[r]`: members that first got message r after the deadline. */
  late: Uint32Array;
  duplicates: number;
}

/**
 * Joins a fan-out ledger in units of deliveries (message x member): `sent`,
 * `accepted` and `rejected` are what the messages owe, so `delivered + lost ==
 * accepted` and `accepted + rejected == sent` hold as for {@link reconcileLedger}.
 * `rejectedByStatus` is also in deliveries (a rejected message owes nobody, but
 * counting what it would have owed keeps the two invariants).
 */
export function reconcileFanOut(
  pub: FanOutPublisherCounts,
  dev: FanOutDeviceCounts,
): DeliveryLedger {
  let sent = 0;
  let accepted = 0;
  let delivered = 0;
  let late = 0;
  let unconfirmed = 0;
  pub.sent.forEach((r) => {
    const owed = pub.fanOut(r);
    sent += owed;
    const got = dev.delivered[r] ?? 0;
    if (pub.accepted.has(r)) {
      accepted += owed;
      delivered += Math.min(got, owed);
      late += Math.min(dev.late[r] ?? 0, owed - Math.min(got, owed));
    } else {
      unconfirmed += got;
    }
  });
  const rejected = sent - accepted;
  const rejectedMessages = Object.values(pub.rejectedByStatus).reduce((a, b) => a + b, 0);
  // Spread the rejected deliveries over the statuses in proportion to messages.
  const rejectedByStatus: Record<string, number> = {};
  let left = rejected;
  const statuses = Object.entries(pub.rejectedByStatus);
  statuses.forEach(([status, n], k) => {
    const share =
      k === statuses.length - 1 ? left : Math.round((rejected * n) / Math.max(1, rejectedMessages));
    rejectedByStatus[status] = share;
    left -= share;
  });
  return {
    sent,
    accepted,
    delivered,
    lost: accepted - delivered,
    rejected,
    rejectedByStatus,
    duplicates: dev.duplicates,
    late,
    unconfirmed,
    rate: accepted === 0 ? 1 : delivered / accepted,
  };
}

/** Adds each key's count in `from` to `into` (counts by status, reason, close code, ...). */
export function addCounts(
  into: Record<string, number>,
  from: Readonly<Record<string, number>>,
): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}
