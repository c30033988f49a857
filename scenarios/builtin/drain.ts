import { defineScenario } from '../define.js';

/**
 * Scaling down two ways in one run: 5 s after the ramp (8 s at the default
 * size) one node leaves by graceful drain (out of the balancer, goaways spread
 * over 5 s); 14 s later another is killed.
 * The drain's reconnects trickle; the kill's arrive as a herd.
 */
export default defineScenario({
  name: 'drain',
  description: 'scale down by graceful drain vs by kill; compare the herd peaks',
  topology: {
    nodes: 6,
    balancer: { algorithm: 'least-connections', health: { interval: '500ms', timeout: '500ms' } },
    profiles: { default: { drainWindow: '5s' } },
  },
  // Full jitter over 0-500 ms, as node-kill's devices. With exponential delays the
  // kill's devices were all due at one instant; with equal jitter 100ms-2s, within 50 ms
  // of each other. Two cores then start them up to 51-217 ms late (INVALID in 5 of 6
  // runs); spread over 0.5 s they still come as a herd, 600 attempts in the kill's first
  // second (2 of 2 runs valid and passing, bench/RESULTS.md, eleventh session).
  devices: { count: 3000, connectRate: 1000, reconnect: 'full-jitter:500ms:5s' },
  traffic: { direct: { rate: 300 } },
  timeline: [
    {
      at: '5s',
      after: 'ramp',
      action: 'scale-down',
      region: 'local',
      nodes: 1,
      graceful: true,
      label: 'drain',
    },
    {
      at: '19s',
      after: 'ramp',
      action: 'scale-down',
      region: 'local',
      nodes: 1,
      graceful: false,
      label: 'kill',
    },
  ],
  duration: '30s',
  // The drain's gate is a share of the devices it moved, so it holds at any --devices (an
  // absolute peak < 300 failed at 20,000 devices: 1,040 a second, 31 % of 3,333 drained);
  // the kill's herd only grows with the fleet.
  gates: ['fault(drain).peakShare < 40%', 'fault(kill).peak >= 300', 'storm.notBack < 1'],
});
