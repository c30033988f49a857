import { defineScenario } from '../define.js';

/** The foundation check: one node, 2,000 devices, 1,000 direct pushes/s for 20 s. */
export default defineScenario({
  name: 'smoke',
  description: 'one node, 2,000 devices, 1,000 direct pushes/s for 20 s',
  topology: { nodes: 1 },
  devices: { count: 2000, connectRate: 1000, connectTimeout: '10s', accounts: 100 },
  traffic: { direct: { rate: 1000, payloadBytes: 64 } },
  duration: '20s',
  deliveryDeadline: '5s',
  gates: ['delivery >= 99.9%', 'p99(push) < 50ms', 'connections.held >= 100%'],
});
