import { defineScenario } from '../define.js';

/**
 * Two regions; 200 ms is added to every link of `us` 6 s after the ramp (8 s at
 * the default size). With the default
 * latency-based routing the global entry keeps sending `us` devices home: p99
 * there jumps by the delay and nothing fails over (Pubby: latency-based
 * routing does not see a slow service). Run with `--set topology.routing.mode=health`
 * and the global health checks (300 ms timeout) see it: devices that reconnect
 * (every 6 s here) go to `eu`.
 */
export default defineScenario({
  name: 'regional-latency',
  description:
    'two regions, +200 ms on one; p99 per region; failover only with health-checked routing',
  topology: {
    regions: [
      { name: 'eu', nodes: 2 },
      { name: 'us', nodes: 2 },
    ],
    routing: { mode: 'latency', health: { interval: '500ms', timeout: '300ms', fall: 2, rise: 2 } },
  },
  devices: {
    count: 2000,
    connectRate: 1000,
    regions: { eu: 1, us: 1 },
    periodicReconnect: { every: '6s', stagger: '3s' },
    reconnect: 'full-jitter:200ms:2s',
  },
  traffic: { direct: { rate: 500 } },
  timeline: [
    {
      at: '6s',
      after: 'ramp',
      action: 'latency',
      region: 'us',
      delay: '200ms',
      jitter: '10ms',
      label: 'slow-us',
    },
  ],
  duration: '20s',
  gates: ['p50(push@eu) < 50ms', 'p99(push@us) >= 200ms', 'delivery >= 99%'],
});
