/**
 * Joins what the workers reported at the end of a run into the load result:
 * the ledger (publisher's accepted ∩ devices' delivered), the connection
 * totals, the drops on the run's time axis, and whether the generator kept up.
 */
import { addCounts, Bitset, reconcileLedger } from '../core/measure/ledger.js';
import type {
  ConnectionTotals,
  LoadResult,
  PlacementSummary,
  RunMarker,
  WorkerHealth,
} from '../core/result.js';
import type { Scenario } from '../scenarios/schema.js';
import type { DeviceFinal, PublisherFinal } from './messages.js';
import type { Placement } from './placement.js';
import type { RunFold } from './run-fold.js';
import { runSaturation } from './self-check.js';
import { mergeTraffic } from './traffic/ledgers.js';

/** What the coordinator hands over once every worker has sent its final report. */
export interface LoadEnd {
  scenario: Scenario;
  fold: RunFold;
  publisher: PublisherFinal;
  markers: RunMarker[];
  placement: PlacementSummary;
  marks: LoadResult['marks'];
}

/** The run's load result from its workers' final reports. */
export function buildLoadResult(end: LoadEnd): LoadResult {
  const { fold, publisher: pub, marks } = end;
  const finals = [...fold.finals].sort((a, b) => a.workerIndex - b.workerIndex);
  const delivered = new Bitset();
  const late = new Bitset();
  let duplicates = 0;
  let badFrames = 0;
  let gaveUp = 0;
  const workers: WorkerHealth[] = [];
  for (const f of finals) {
    delivered.addAll(new Bitset(f.delivered));
    late.addAll(new Bitset(f.late));
    duplicates += f.duplicates;
    badFrames += f.badFrames;
    gaveUp += f.gaveUp;
    workers.push({ worker: `devices-${f.workerIndex}`, ...f.self });
  }
  workers.push({ worker: 'publisher', ...pub.self });
  const lag = fold.lag();
  const reasons = [...lag.reasons, ...new Set(runSaturation(workers, pub.skipped))];
  const { drops, dropNodes } = dropsOf(finals, marks.startUs);
  return {
    lostAtS: lostPushTimes(end.scenario, pub, delivered, marks),
    notFoundAtS: (pub.notFoundAtUs ?? [])
      .map((us) => Math.round((us - marks.startUs) / 1e3) / 1e3)
      .sort((a, b) => a - b),
    connections: connectionTotals(finals),
    drops,
    dropNodes,
    gaveUp,
    ledger: reconcileLedger(
      {
        sent: pub.sent,
        accepted: new Bitset(pub.accepted),
        rejectedByStatus: pub.rejectedByStatus,
      },
      { delivered, late, duplicates },
    ),
    traffic: mergeTraffic(finals, pub),
    histograms: fold.histograms,
    ...(fold.groups.size > 0 && { groupHistograms: Object.fromEntries(fold.groups) }),
    timeline: fold.timeline,
    generator: {
      valid: reasons.length === 0,
      reasons,
      warnings: [
        ...lag.warnings,
        ...(fold.lateReports > 0
          ? [
              `${fold.lateReports} interval report${fold.lateReports === 1 ? '' : 's'} arrived after ${fold.lateReports === 1 ? 'its' : 'their'} second was closed (agents across a slow link, or a lagging worker); each was merged into its own second all the same`,
            ]
          : []),
      ],
      workers,
      skippedSends: pub.skipped,
      placement: end.placement,
    },
    unaddressed: pub.noTarget,
    badFrames,
    intervals: fold.intervals,
    markers: end.markers,
    marks,
  };
}

/** The fleet's connection totals: the sum of every shard's share. */
export function connectionTotals(finals: readonly DeviceFinal[]): ConnectionTotals {
  const t: ConnectionTotals = {
    requested: 0,
    established: 0,
    heldAtEnd: 0,
    failed: 0,
    failuresByReason: {},
    closesByCode: {},
    lossesByCause: {},
    reconnectingAtEnd: 0,
  };
  for (const f of finals) {
    t.requested += f.requested;
    t.established += f.established;
    t.heldAtEnd += f.heldAtEnd;
    t.reconnectingAtEnd += f.reconnectingAtEnd;
    addCounts(t.failuresByReason, f.failuresByReason);
    addCounts(t.closesByCode, f.closesByCode);
    addCounts(t.lossesByCause, f.lossesByCause);
  }
  t.failed = t.requested - t.established;
  return t;
}

/** Every shard's losses as [lost at, back at (-1 never), attempts] in seconds since the start, and their nodes. */
function dropsOf(
  finals: readonly DeviceFinal[],
  startUs: number,
): { drops: Float64Array; dropNodes: string[] } {
  const drops = new Float64Array(finals.reduce((n, f) => n + f.drops.length, 0));
  const dropNodes: string[] = [];
  let d = 0;
  for (const f of finals) {
    for (const n of f.dropNodes) dropNodes.push(n >= 0 ? (f.nodeNames[n] ?? '') : '');
    for (let i = 0; i + 2 < f.drops.length; i += 3) {
      const back = f.drops[i + 1]!;
      drops[d++] = (f.drops[i]! - startUs) / 1e6;
      drops[d++] = back > 0 ? (back - startUs) / 1e6 : -1;
      drops[d++] = f.drops[i + 2]!;
    }
  }
  return { drops, dropNodes };
}

/**
 * Scheduled send times (s since start) of direct and indirect pushes that
 * were accepted and never delivered, so losses can be laid against faults.
 * Each kind's n-th message was due at publish start + n / rate.
 */
function lostPushTimes(
  scenario: Scenario,
  pub: PublisherFinal,
  delivered: Bitset,
  marks: LoadResult['marks'],
): number[] {
  const out: number[] = [];
  for (const kind of ['direct', 'indirect'] as const) {
    const k = pub.kinds[kind];
    const rate = scenario.traffic[kind].rateHz;
    if (!k || rate <= 0) continue;
    const accepted = new Bitset(k.accepted);
    let n = 0;
    new Bitset(k.seqs).forEach((seq) => {
      if (accepted.has(seq) && !delivered.has(seq)) {
        out.push(Math.round((marks.publishStartUs + (n * 1e6) / rate - marks.startUs) / 1e4) / 100);
      }
      n++;
    });
  }
  return out.sort((a, b) => a - b);
}

/** Where the fleet ran, for the report. */
export function summarizePlacement(placement: Placement, agentPids: number[]): PlacementSummary {
  const devicesByProcess = new Array<number>(placement.processes).fill(0);
  for (const s of placement.shards) devicesByProcess[s.process]! += s.deviceCount + s.reserveCount;
  const sourceAddresses: Record<string, string[]> = {};
  for (const r of placement.routes) {
    sourceAddresses[r.region] = [
      ...new Set([...(sourceAddresses[r.region] ?? []), ...r.localAddresses]),
    ];
  }
  return {
    processes: placement.processes,
    threadsPerProcess: placement.threadsPerProcess,
    devicesByProcess,
    agentPids,
    sourceAddresses,
    reasons: placement.reasons,
    ...(placement.clientHosts && { clientHosts: placement.clientHosts }),
  };
}
