import { defineScenario } from '../define.js';

/**
 * The release gate: direct, indirect, device-to-device and room traffic at once
 * on a two-node cluster, long enough that 99.999 % delivery can be shown at
 * 95 % confidence (>= 299,572 delivered with no loss). Shorter runs are
 * honestly `inconclusive`, never `pass`.
 */
export default defineScenario({
  name: 'five-nines',
  description:
    'mixed direct, indirect, d2d and room traffic; enough messages to show 99.999 % delivery',
  topology: { nodes: 2 },
  devices: { count: 2000, connectRate: 1000 },
  traffic: {
    direct: { rate: 1500 },
    indirect: { rate: 500 },
    d2d: { rate: 100 },
    rooms: { count: 20, perDevice: 1, rate: 40 },
  },
  duration: '70s',
  deliveryDeadline: '10s',
  gates: [
    'delivery >= 99.999%',
    'p99(push) < 100ms',
    'p99(room) < 100ms',
    'connections.held >= 100%',
  ],
});
