import { describe, expect, it } from 'vitest';
import { balancerPoint } from '../../run/run.js';
import type { BackendSample, NetworkSample } from '../../topology/network/types.js';

const backend = (nodeId: string, healthChangedAtMs: number | null): BackendSample => ({
  nodeId,
  region: 'local',
  connections: 10,
  accepted: 10,
  healthy: healthChangedAtMs === null,
  inRotation: healthChangedAtMs === null,
  weight: 1,
  conntrackHeld: 0,
  conntrackTimedOut: 0,
  healthChangedAtMs,
  checksStarved: 0,
});

describe("the balancers' per-second view on the run's time axis", () => {
  it('places the sample and a health change by their wall-clock distance from when the sample came in', () => {
    // The network process sampled at wall 1,000,300 ms; the backend left at 1,000,000;
    // the nodes' counts kept the sample waiting until wall 1,000,500, run time 10.0 s.
    const net: NetworkSample = {
      atMs: 1_000_300,
      backends: [backend('local-1', null), backend('local-2', 1_000_000)],
      regions: {},
    };
    const point = balancerPoint(10, 1_000_500, net);
    expect(point.t).toBe(9.8);
    // Not 9.7: the 200 ms the sample waited must not make the change look later.
    expect(point.backends['local-2']?.healthChangedAtS).toBe(9.5);
    expect(point.backends['local-1']?.healthChangedAtS).toBeUndefined();
  });
});
