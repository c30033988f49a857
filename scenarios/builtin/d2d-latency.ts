import { defineScenario } from '../define.js';

/**
 * Device-to-device messages between partners on different nodes, sent over the
 * devices' own sockets. The node looks the target up in the registry and
 * caches it; the first message of each pair pays the lookup (cold), the rest
 * hit the cache (warm). Pushy: median < 1 ms, p99 < 4 ms inside the service.
 */
export default defineScenario({
  name: 'd2d-latency',
  description:
    'device-to-device pairs on different nodes; median and p99 with a cold vs warm target cache',
  topology: { nodes: 2 },
  // An odd number of accounts puts d2d partners (i and i + accounts) on different nodes
  // of a round-robin pair.
  devices: { count: 1000, connectRate: 800, accounts: 101 },
  traffic: { direct: { rate: 0 }, d2d: { rate: 500 } },
  duration: '15s',
  gates: [
    'p50(d2d) < 5ms',
    'p99(d2d) < 25ms',
    // Cold: the first message to a device since it connected, when its sender's
    // node had no cached route; warm: every later one.
    'p50(d2d_cold) < 10ms',
    'p50(d2d_warm) < 5ms',
    'delivery >= 99.9%',
  ],
});
