import { defineScenario } from '../define.js';

/**
 * Scaling down two ways in one run: at 8 s one node leaves by graceful drain
 * (out of the balancer, goaways spread over 5 s); at 22 s another is killed.
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
  // Jittered, as real clients are: with plain exponential delays the kill's 500
  // devices were all due at one instant, and the generator, starting them one
  // after another, began the last 50-138 ms late (INVALID in 5 of 5 runs here);
  // with equal jitter the kill's herd still peaks at 600/s (bench/RESULTS.md).
  devices: { count: 3000, connectRate: 1000, reconnect: 'equal-jitter:100ms:2s' },
  traffic: { direct: { rate: 300 } },
  timeline: [
    { at: '8s', action: 'scale-down', region: 'local', nodes: 1, graceful: true, label: 'drain' },
    { at: '22s', action: 'scale-down', region: 'local', nodes: 1, graceful: false, label: 'kill' },
  ],
  duration: '30s',
  gates: ['fault(drain).peak < 300', 'fault(kill).peak >= 300', 'storm.notBack < 1'],
});
