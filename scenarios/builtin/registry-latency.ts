import { defineScenario } from '../define.js';

/**
 * Pushy's registry datastore had "brief periods of elevated read latencies":
 * client registration slowed down, device-to-device latency barely moved,
 * because target lookups were cached. Here +50 ms each way on every node's link
 * to the registry's Redis (the broker's link, which carries node-to-node
 * forwards, is untouched) for 10 s, under d2d traffic and periodic reconnects.
 *
 * - `register` (attempt due -> registry entry written) rises by the round trip;
 * - `d2d_warm` (every message after a receiver's first since it connected)
 *   comes from the cache and stays where it was;
 * - `d2d_cold` pays the lookup, like registrations.
 *
 * With `--set topology.profiles.default.d2dCacheTtl=0` every d2d message asks
 * the registry, and `d2d_warm` follows the datastore: the rise gate fails.
 */
export default defineScenario({
  name: 'registry-latency',
  description:
    '+50 ms on the registry datastore link mid-run: registration slows, warm d2d (cached lookups) barely moves',
  topology: {
    nodes: 2,
    redis: 'managed',
    balancer: 'least-connections',
    profiles: { default: { d2dCacheTtl: '30s' } },
  },
  // An odd number of accounts puts d2d partners (i and i + accounts) on different nodes
  // of a pair more often than not.
  devices: {
    count: 1000,
    connectRate: 500,
    accounts: 101,
    registration: true,
    periodicReconnect: { every: '20s', stagger: '10s' },
  },
  traffic: { direct: { rate: 0 }, d2d: { rate: 500 } },
  duration: '25s',
  timeline: [
    {
      // 14 s at the default size.
      at: '12s',
      after: 'ramp',
      action: 'datastore-latency',
      link: 'registry',
      delay: '50ms',
      for: '10s',
      label: 'registry-slow',
    },
  ],
  gates: [
    // The fault bit: registrations wait for the slower registry...
    'fault(registry-slow).rise.p50(register) > 5',
    // ...and warm device-to-device messages did not.
    // A p99 of a few ms can double on a busy 2-core box (2.2x was seen under a parallel
    // test load); the datastore would add 100 ms, a rise of 15-20x.
    'fault(registry-slow).rise.p99(d2d_warm) < 3',
    'fault(registry-slow).during.p99(d2d_warm) < 50ms',
    'delivery >= 99.9%',
  ],
});
