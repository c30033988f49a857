import { describe, expect, it } from 'vitest';
import type { RunMarker } from '../../core/result.js';
import { midRampWarning } from '../../run/run.js';
import type { FaultRecord } from '../../topology/chaos.js';

const fault = (action: FaultRecord['action'], label: string, t: number, fired = true) =>
  ({ action, label, target: 'local-2', t, tEnd: null, fired }) satisfies FaultRecord;
const markers: RunMarker[] = [
  { t: 0, kind: 'phase', label: 'connecting' },
  { t: 20.4, kind: 'phase', label: 'publishing' },
];

describe('faults that fired mid-ramp', () => {
  it('names a fleet fault that fired before publishing began, and nothing else', () => {
    expect(
      midRampWarning(
        [
          fault('kill-node', 'kill', 10.05),
          // By design during the ramp, or not aimed at the fleet held: not named.
          fault('conntrack-limit', 'conntrack', 0),
          fault('scale-up', 'grow', 6),
          fault('connect', 'connect +100', 8),
          // After the ramp, or never fired: fine.
          fault('blackhole', 'hole', 26.4),
          fault('reset', 'never', 5, false),
        ],
        markers,
      ),
    ).toBe(
      'kill at 10.05s fired before the initial ramp resolved (publishing began at 20.4s): it met a fleet still connecting, so shares and herds count only the devices up by then; "after": "ramp" counts an action from the ramp\'s end',
    );
    expect(midRampWarning([fault('blackhole', 'hole', 26.4)], markers)).toBeUndefined();
    // A run that never published (it failed first) has nothing to compare with.
    expect(midRampWarning([fault('kill-node', 'kill', 1)], markers.slice(0, 1))).toBeUndefined();
  });
});
