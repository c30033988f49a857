/**
 * How many worker processes each reference node runs (`serve --processes`):
 * enough that the connections it is expected to hold fit under one process's
 * open-file limit. Pure, so the decision is testable for given limits.
 */
import type { Scenario } from '../scenarios/schema.js';

/** File descriptors a node process needs beyond its device sockets (hub link, HTTP, stdio, libs). */
export const NODE_FD_OVERHEAD = 200;

/** Share of a node process's files its connections are planned to use: the primary hands connections out round-robin, not by count. */
export const NODE_FILES_USED = 0.9;

/** Share above the even split a node of a balanced region should be ready for (balancers skew). */
export const BALANCED_HEADROOM = 1.25;

/** Connections one node of `region` is expected to hold at most: its region's devices over its nodes. */
export function expectedConnectionsPerNode(scenario: Scenario, region: string): number {
  const r = scenario.topology.regions.find((x) => x.name === region);
  if (!r) return 0;
  const devices = scenario.devices.regions
    .filter((b) => b.region === region)
    .reduce((a, b) => a + b.count, 0);
  const even = Math.ceil(devices / Math.max(1, r.nodes));
  return r.nodes > 1 ? Math.ceil(even * BALANCED_HEADROOM) : even;
}

/**
 * Worker processes for one node: the profile's `processes` when given; one
 * when the profile sets `openFiles` (a limit the run means to hit) or the
 * limit is unknown; else enough processes of {@link NODE_FILES_USED} of
 * `openFiles - NODE_FD_OVERHEAD` connections each.
 */
export function nodeProcesses(
  profile: { processes: number | null; openFiles: number | null },
  expectedConnections: number,
  openFiles: number | null,
): number {
  if (profile.processes !== null) return profile.processes;
  if (profile.openFiles !== null || openFiles === null || !Number.isFinite(openFiles)) return 1;
  const perProcess = Math.max(1, Math.floor((openFiles - NODE_FD_OVERHEAD) * NODE_FILES_USED));
  return Math.max(1, Math.ceil(expectedConnections / perProcess));
}
