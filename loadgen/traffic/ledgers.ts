/**
 * The coordinator's side of the traffic kinds: what each device worker gets to
 * run rooms and d2d (`deviceTrafficConfig`), what the publisher gets
 * (`publisherTraffic`), and the per-kind delivery ledgers joined at the end
 * (`mergeTraffic`).
 *
 * What "accepted" means, per kind (the ledger's promise `delivered + lost ==
 * accepted` is about these):
 * - direct: the node answered `POST /v1/push/{device}` with 200 (`delivered`
 *   into the device's socket).
 * - indirect: the node answered `POST /v1/queue` with 202 (or 200): queued.
 *   The queue is best effort, so an accepted message may still be lost.
 * - room: the node answered `PUT /v1/rooms/{room}/messages` with 200
 *   (`published`); the message then owes one delivery to every member of the
 *   room (rooms.ts), so the room ledger counts deliveries, not messages.
 * - d2d: the sender got `d2d_status` `delivered` back.
 */
import {
  addCounts,
  Bitset,
  type DeliveryLedger,
  reconcileFanOut,
  reconcileLedger,
} from '../../core/measure/ledger.js';
import type { TrafficResult } from '../../core/result.js';
import type { Scenario } from '../../scenarios/schema.js';
import type {
  PublishedKind,
  PublisherFinal,
  PublisherWorkerData,
  RoomLayout,
} from '../messages.js';
import type { TrafficConfig } from './config.js';
import type { D2dFinal } from './d2d.js';
import type { TrafficFinal } from './index.js';
import { type RoomFinal, roomMembers } from './rooms.js';

/** The device workers' traffic config (see config.ts for each field). */
export function deviceTrafficConfig(scenario: Scenario, shards = scenario.workers): TrafficConfig {
  return {
    devices: scenario.devices.count,
    accounts: scenario.devices.accounts,
    workerStride: Math.max(1, shards),
    durationMs: scenario.durationMs,
    seed: scenario.seed,
    rooms: { ...scenario.traffic.rooms },
    d2d: { ...scenario.traffic.d2d },
  };
}

/** The traffic part of the publisher's start-up data. */
export function publisherTraffic(
  scenario: Scenario,
): Pick<PublisherWorkerData, 'rateHz' | 'payloadBytes' | 'durationMs' | 'indirect' | 'rooms'> {
  const { direct, indirect, rooms } = scenario.traffic;
  return {
    rateHz: direct.rateHz,
    payloadBytes: direct.payloadBytes,
    durationMs: scenario.durationMs,
    indirect: { ...indirect },
    rooms: {
      count: rooms.count,
      perDevice: rooms.perDevice,
      devices: scenario.devices.count,
      // Without members a room message owes nothing; do not publish any.
      rateHz: rooms.perDevice > 0 ? rooms.rateHz : 0,
      payloadBytes: rooms.payloadBytes,
    },
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The fleet's push ledger side (DeviceFinal fields), when present. */
interface PushSide {
  delivered: Bitset;
  late: Bitset;
  duplicates: number;
}

/**
 * Splits what each device worker returned into its push side (the DeviceFinal
 * fields `delivered`, `late`, `duplicates`) and its traffic final. Accepts a
 * DeviceFinal carrying the traffic final under `traffic`, or a bare traffic final.
 */
function split(finals: unknown[]): { push: PushSide; traffic: TrafficFinal[] } {
  const push: PushSide = { delivered: new Bitset(), late: new Bitset(), duplicates: 0 };
  const traffic: TrafficFinal[] = [];
  for (const f of finals) {
    if (!isRecord(f)) continue;
    if (f.kind === 'pushbench-traffic') {
      traffic.push(f as unknown as TrafficFinal);
      continue;
    }
    if (f.delivered instanceof Uint8Array) push.delivered.addAll(new Bitset(f.delivered));
    if (f.late instanceof Uint8Array) push.late.addAll(new Bitset(f.late));
    if (typeof f.duplicates === 'number') push.duplicates += f.duplicates;
    if (isRecord(f.traffic) && f.traffic.kind === 'pushbench-traffic') {
      traffic.push(f.traffic as unknown as TrafficFinal);
    }
  }
  return { push, traffic };
}

function pushLedger(kind: PublishedKind, push: PushSide, duplicates: number): DeliveryLedger {
  const seqs = new Bitset(kind.seqs);
  // Only this kind's seqs: the fleet's bitsets hold direct and indirect arrivals together.
  return reconcileLedger(
    {
      sent: kind.sent,
      accepted: new Bitset(kind.accepted),
      rejectedByStatus: kind.rejectedByStatus,
    },
    { delivered: push.delivered.and(seqs), late: push.late.and(seqs), duplicates },
  );
}

function roomLedger(
  finals: RoomFinal[],
  kind: PublishedKind,
  layout: RoomLayout,
): TrafficResult['room'] {
  let delivered: Uint32Array = new Uint32Array(0);
  let late: Uint32Array = new Uint32Array(0);
  let duplicates = 0;
  let recovered = 0;
  let resyncs = 0;
  const add = (into: Uint32Array, from: Uint32Array): Uint32Array => {
    const out = from.length > into.length ? new Uint32Array(from.length) : into;
    if (out !== into) out.set(into);
    for (let r = 0; r < from.length; r++) out[r] = (out[r] ?? 0) + (from[r] ?? 0);
    return out;
  };
  for (const f of finals) {
    delivered = add(delivered, f.delivered);
    late = add(late, f.late);
    duplicates += f.duplicates;
    recovered += f.recovered;
    resyncs += f.resyncs;
  }
  const count = layout.count;
  const members: number[] = [];
  for (let k = 0; k < count; k++) {
    members.push(roomMembers(k, layout.devices, count, layout.perDevice));
  }
  const sentSet = new Bitset(kind.seqs);
  const acceptedSet = new Bitset(kind.accepted);
  const ledger = reconcileFanOut(
    {
      sent: sentSet,
      accepted: acceptedSet,
      rejectedByStatus: kind.rejectedByStatus,
      fanOut: (r) => (count > 0 ? (members[r % count] ?? 0) : 0),
    },
    { delivered, late, duplicates },
  );
  return {
    ...ledger,
    recovered,
    resyncs,
    expected: ledger.accepted,
    messages: { sent: kind.sent, accepted: acceptedSet.count() },
  };
}

function d2dLedger(finals: D2dFinal[]): TrafficResult['d2d'] {
  const sent = new Bitset();
  const accepted = new Bitset();
  const delivered = new Bitset();
  const late = new Bitset();
  const statuses: Record<string, number> = {};
  let notSent = 0;
  let duplicates = 0;
  for (const f of finals) {
    sent.addAll(new Bitset(f.sent));
    accepted.addAll(new Bitset(f.accepted));
    delivered.addAll(new Bitset(f.delivered));
    late.addAll(new Bitset(f.late));
    addCounts(statuses, f.statuses);
    notSent += f.notSent;
    duplicates += f.duplicates;
  }
  const sentCount = sent.count();
  const acceptedCount = accepted.count();
  const rejectedByStatus: Record<string, number> = {};
  let rejected = 0;
  for (const [k, v] of Object.entries(statuses)) {
    if (k === 'delivered') continue;
    rejectedByStatus[k] = v;
    rejected += v;
  }
  // Sent but never answered (the sender's connection went first): not accepted.
  const unanswered = sentCount - acceptedCount - rejected;
  if (unanswered > 0) rejectedByStatus.no_status = unanswered;
  const ledger = reconcileLedger(
    { sent: sentCount, accepted, rejectedByStatus },
    { delivered, late, duplicates },
  );
  return { ...ledger, notSent, statuses };
}

/** An empty push kind, for a publisher final from before the per-kind split. */
const NO_KIND: PublishedKind = {
  sent: 0,
  seqs: new Uint8Array(0),
  accepted: new Uint8Array(0),
  rejectedByStatus: {},
};

/**
 * Joins the device workers' finals and the publisher's final into one ledger
 * per traffic kind. `deviceFinals` are the DeviceFinal messages, each carrying
 * its `DeviceTraffic.final()` under `traffic` (bare traffic finals are accepted
 * too, but then direct/indirect have no arrivals to count).
 * Room membership comes from the publisher final's `roomLayout`.
 */
export function mergeTraffic(
  deviceFinals: unknown[],
  publisherFinal: PublisherFinal,
): TrafficResult {
  const { push, traffic } = split(deviceFinals);
  const kinds = publisherFinal.kinds ?? { direct: NO_KIND, indirect: NO_KIND, room: NO_KIND };
  // The fleet counts push duplicates without their seq; only the queue retries,
  // so they are put under indirect whenever indirect messages were sent.
  const indirectDups = kinds.indirect.sent > 0 ? push.duplicates : 0;
  const direct = pushLedger(kinds.direct, push, push.duplicates - indirectDups);
  const indirect = pushLedger(kinds.indirect, push, indirectDups);
  const room = roomLedger(
    traffic.flatMap((t) => (t.rooms ? [t.rooms] : [])),
    kinds.room,
    publisherFinal.roomLayout ?? { count: 0, perDevice: 0, devices: 0 },
  );
  const d2d = d2dLedger(traffic.flatMap((t) => (t.d2d ? [t.d2d] : [])));
  const accepted = direct.accepted + indirect.accepted + room.accepted + d2d.accepted;
  const delivered = direct.delivered + indirect.delivered + room.delivered + d2d.delivered;
  return {
    direct,
    indirect,
    room,
    d2d,
    combined: {
      accepted,
      delivered,
      lost: accepted - delivered,
      rate: accepted === 0 ? 1 : delivered / accepted,
    },
  };
}
