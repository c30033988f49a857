import { defineScenario } from '../define.js';

/**
 * Scale: ramp to N devices on one node, hold them, and check that both ends
 * count every one held. Past one process's open-file limit the fleet spreads
 * over load agent processes and the node over worker processes sharing its
 * port (see `pushbench run hold --devices 250000 --preflight`).
 */
export default defineScenario({
  name: 'hold',
  description:
    'ramp to 20,000 devices on one node (--devices N), hold 30 s, both ends count all held',
  // Heartbeats every 30 s: at the node's default 10 s, 250,000 idle devices cost 25,000
  // pings and pongs a second, most of this box's two cores.
  topology: { nodes: 1, heartbeatInterval: '30s', heartbeatTimeout: '90s' },
  // 2,000 connects/s: what two cores hold with the node on the same box (the preflight's
  // CPU estimate; past ~100,000 devices it asks for less, see --preflight).
  devices: { count: 20_000, connectRate: 2000, connectTimeout: '30s', accounts: 1000 },
  duration: '30s',
  deliveryDeadline: '1s',
  gates: [
    'connections.established >= 100%',
    'connections.held >= 100%',
    'connections.heldAtServer >= 100%',
    'p99(connect) < 1s',
  ],
});
