import { defineScenario } from '../define.js';

/**
 * A node goes silent: every byte to and from it is dropped but no socket
 * closes (a partition, not a crash). Only heartbeats can tell. Devices give up
 * on a connection after 5 s without a ping (the node pings every 2 s); the
 * node drops its side after 6 s. Pushes the node accepted meanwhile were
 * written into dead sockets: they are lost, and counted against this fault.
 */
export default defineScenario({
  name: 'silent-failure',
  description:
    'blackhole a node; time until heartbeats detect it; messages written into dead sockets are lost',
  topology: {
    nodes: 3,
    heartbeatInterval: '2s',
    heartbeatTimeout: '6s',
    balancer: { algorithm: 'least-connections', health: { interval: '500ms', timeout: '500ms' } },
  },
  devices: {
    count: 1500,
    connectRate: 1000,
    heartbeatTimeout: '5s',
    reconnect: 'full-jitter:500ms:3s',
  },
  traffic: { direct: { rate: 300 } },
  // 6 s at the default size; after the ramp at any --devices.
  timeline: [
    { at: '4500ms', after: 'ramp', action: 'blackhole', node: 'local-2', label: 'blackhole' },
  ],
  duration: '20s',
  gates: [
    'fault(blackhole).share >= 20%',
    'fault(blackhole).t50 >= 3s',
    'fault(blackhole).lost >= 1',
    'storm.notBack < 1',
  ],
});
