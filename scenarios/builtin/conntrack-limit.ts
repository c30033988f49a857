import { defineScenario } from '../define.js';

/**
 * Pubby's nf_conntrack_max: region `tight` has a table of 300 entries per node
 * for the first 6 s while its 1,000 devices connect; connections over it get no
 * answer (SYNs dropped) and are let in only at the kernel's SYN retry times
 * (1, 2, 3, 4, 5, 7, 11 … s) once there is room. Region `roomy` has no limit.
 * The connect-time histogram of `tight` shows the hangs; `roomy` shows none.
 */
export default defineScenario({
  name: 'conntrack-limit',
  description:
    'a conntrack table smaller than the fleet: connects hang at SYN retry times; without the limit they do not',
  topology: {
    regions: [
      { name: 'tight', nodes: 2 },
      { name: 'roomy', nodes: 2 },
    ],
  },
  devices: {
    count: 2000,
    connectRate: 400,
    connectTimeout: '20s',
    regions: { tight: 1, roomy: 1 },
    reconnect: 'full-jitter:500ms:5s',
  },
  traffic: { direct: { rate: 200 } },
  timeline: [
    {
      at: '0s',
      action: 'conntrack-limit',
      region: 'tight',
      table: 300,
      for: '6s',
      label: 'conntrack',
    },
  ],
  duration: '10s',
  gates: ['p99(connect@tight) >= 900ms', 'p99(connect@roomy) < 500ms', 'connections.held >= 99.9%'],
});
