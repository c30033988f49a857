/**
 * Which network engine a run gets: `topology.network` as asked, with `auto`
 * (the default) resolved against the scenario (a run with nothing to balance
 * or fault, or with pushbench's builtin balancer, stays on the userland path it
 * always had; a `haproxy` or `kernel` balancer asks for the kernel) and this machine (root, `ip`, `nft`, and `haproxy` where a
 * balancer asks for it) and against what the kernel engine plays today. The
 * answer comes with its reason, printed in the run's first lines and kept in
 * the report.
 */
import { execFileSync } from 'node:child_process';
import { PushbenchError } from '../../core/errors.js';
import type { RegionTopology, Scenario } from '../../scenarios/types.js';
import { kernelEngineMissing } from './commands.js';

/** The engine a run uses, and why. */
export interface NetworkEngineChoice {
  engine: 'userland' | 'kernel';
  why: string;
}

function hasHaproxy(): boolean {
  try {
    execFileSync('haproxy', ['-v'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Timeline actions the network plays. */
const NETWORK_ACTIONS = new Set([
  'latency',
  'blackhole',
  'reset',
  'conntrack-limit',
  'admission-rate',
  'bandwidth',
  'partition',
]);
/** Timeline actions only the kernel engine plays. */
const KERNEL_ONLY_ACTIONS = new Set(['bandwidth', 'partition']);

const IPV4_HOST = /^rediss?:\/\/(?:[^@/]*@)?\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?:\/|$)/;
const LOOPBACK = /^(?:rediss?:\/\/)(?:[^@/]*@)?(?:127\.|localhost|\[::1\])/;

/** True when the run routes between regions by health: a global entry in front of them. */
export function routesByHealth(scenario: Scenario): boolean {
  return scenario.topology.regions.length > 1 && scenario.topology.routing.mode === 'health';
}

/**
 * The regions whose balancer, on the kernel engine, is pushbench's builtin one
 * (the decision point and its relays, topology/kernel/network.ts): a region on
 * `builtin` with more than one node or a scale-up; with health routing, every
 * region on `builtin` (the global entry routes devices to their balancers, and
 * to the others' HAProxy or DNAT addresses).
 */
export function decisionRegions(scenario: Scenario): RegionTopology[] {
  const health = routesByHealth(scenario);
  return scenario.topology.regions.filter(
    (r) =>
      r.balancer.engine === 'builtin' &&
      (health ||
        r.nodes > 1 ||
        scenario.timeline.some((t) => t.action === 'scale-up' && t.region === r.name)),
  );
}

/** True when the run needs the decision point: builtin balancers, or a global entry. */
export function needsDecisionPoint(scenario: Scenario): boolean {
  return routesByHealth(scenario) || decisionRegions(scenario).length > 0;
}

/** What in the scenario the kernel engine does not play yet; empty when it plays all of it. */
export function kernelUnsupported(scenario: Scenario): string[] {
  const out: string[] = [];
  const { topology } = scenario;
  if (topology.balanced) {
    for (const r of topology.regions) {
      if (
        r.balancer.engine === 'kernel' &&
        (r.balancer.algorithm === 'least-connections' || r.balancer.algorithm === 'power-of-two')
      ) {
        out.push(
          `region ${r.name}: balancer.engine "kernel" cannot do ${r.balancer.algorithm} (the kernel does not count connections per backend)`,
        );
      }
    }
  }
  const first = topology.regions[0]?.name;
  const partitions = scenario.timeline.filter((t) => t.action === 'partition');
  // What cuts the datastore: `from: "datastore"`, or a cut across regions with the
  // first region (which holds it) on one side, whole.
  const cutsDatastore = partitions.some(
    (t) =>
      t.from.kind === 'datastore' ||
      (t.from.kind === 'region' &&
        (t.from.region === first || ('region' in t.scope && t.scope.region === first))),
  );
  const grows = scenario.timeline.some((t) => t.action === 'scale-up');
  for (const t of partitions) {
    if (t.from.kind !== 'peers' || grows) continue;
    const region =
      'region' in t.scope
        ? t.scope.region
        : t.scope.nodeId.slice(0, t.scope.nodeId.lastIndexOf('-'));
    if ((topology.regions.find((r) => r.name === region)?.nodes ?? 0) < 2) {
      out.push(`partition from peers in region ${region}, which has one node (no peers)`);
    }
  }
  if (cutsDatastore) {
    const nodes = topology.regions.reduce((n, r) => n + r.nodes, 0);
    if (topology.redisUrl === null && nodes === 1 && !grows) {
      out.push(
        'partition from the datastore with one node (its registry and broker are in its own process: add nodes, or a Redis)',
      );
    } else if (topology.redisUrl !== null && !IPV4_HOST.test(topology.redisUrl)) {
      out.push(
        'partition from a Redis named by host name (give its IPv4 address: the kernel cuts by address)',
      );
    }
  }
  if (topology.redisUrl !== null && LOOPBACK.test(topology.redisUrl)) {
    out.push(
      "a Redis on loopback (nodes on their own hosts cannot reach this machine's 127.0.0.1)",
    );
  }
  return out;
}

/** What this machine lacks for the scenario on the kernel engine. */
function machineMissing(scenario: Scenario): string[] {
  const missing = kernelEngineMissing();
  const wantsHaproxy = scenario.topology.regions.some((r) => r.balancer.engine === 'haproxy');
  if (wantsHaproxy && !hasHaproxy()) missing.push('`haproxy`: apt-get install haproxy');
  return missing;
}

/**
 * Resolves `topology.network`. Throws PB_USAGE (exit 2) in one line when
 * `kernel` is asked and cannot be had, or a balancer engine needs the kernel
 * engine on a `userland` run.
 */
export function chooseNetworkEngine(scenario: Scenario): NetworkEngineChoice {
  const asked = scenario.topology.network;
  const needsKernel = scenario.topology.regions.filter((r) => r.balancer.engine !== 'builtin');
  const kernelFaults = scenario.timeline.filter((t) => KERNEL_ONLY_ACTIONS.has(t.action));
  if (asked === 'userland') {
    if (kernelFaults.length > 0) {
      throw new PushbenchError(
        'PB_USAGE',
        `the ${kernelFaults[0]?.action} action is played by the kernel network engine only: set topology.network to "kernel" (or "auto")`,
      );
    }
    if (needsKernel.length > 0) {
      throw new PushbenchError(
        'PB_USAGE',
        `balancer.engine "${needsKernel[0]?.balancer.engine}" runs on the kernel network engine: set topology.network to "kernel" (or "auto")`,
      );
    }
    return { engine: 'userland', why: 'asked (topology.network "userland")' };
  }
  const missing = machineMissing(scenario);
  const unsupported = kernelUnsupported(scenario);
  if (asked === 'kernel') {
    if (missing.length > 0) {
      throw new PushbenchError('PB_USAGE', `the kernel network engine needs ${missing.join('; ')}`);
    }
    if (unsupported.length > 0) {
      throw new PushbenchError(
        'PB_USAGE',
        // Userland plays no partition: pointing there would be no way out.
        `the kernel network engine does not play ${unsupported.join('; ')}${unsupported.some((u) => u.startsWith('partition')) ? '' : '; use topology.network "userland"'}`,
      );
    }
    return { engine: 'kernel', why: 'asked (topology.network "kernel")' };
  }
  // Nothing to balance and no network fault: devices go straight to the node, as
  // always; no fabric of either kind is made.
  const faults = scenario.timeline.some((t) => NETWORK_ACTIONS.has(t.action));
  if (!scenario.topology.balanced && !faults) {
    return {
      engine: 'userland',
      why: 'auto: one node and no network fault, so devices connect to it directly',
    };
  }
  if (needsKernel.length === 0 && kernelFaults.length === 0) {
    return {
      engine: 'userland',
      why: 'auto: the builtin balancer runs in the userland fabric (balancer.engine "haproxy" or "kernel" runs on the kernel)',
    };
  }
  // A balancer or fault only the kernel engine plays was asked for: no silent substitute.
  const asks =
    needsKernel.length > 0
      ? `balancer.engine "${needsKernel[0]?.balancer.engine}" runs on the kernel network engine, which`
      : `the ${kernelFaults[0]?.action} action is played by the kernel network engine, which`;
  if (missing.length > 0) {
    throw new PushbenchError('PB_USAGE', `${asks} needs ${missing.join('; ')}`);
  }
  if (unsupported.length > 0) {
    // Only a balancer has a userland stand-in; a kernel-only fault has none.
    const instead =
      needsKernel.length > 0
        ? '; use balancer.engine "builtin" on topology.network "userland"'
        : '';
    throw new PushbenchError(
      'PB_USAGE',
      `${asks} does not play ${unsupported.join('; ')}${instead}`,
    );
  }
  return {
    engine: 'kernel',
    why: 'auto: root, ip and nft are here and the kernel engine plays this scenario',
  };
}
