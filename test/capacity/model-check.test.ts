import { describe, expect, it } from 'vitest';
import { checkModel, formatModelCheck } from '../../capacity/model-check.js';

describe('the herd model against a live node kill (reduced)', () => {
  it('simulates the same herd as the live run, close enough to plan with', async () => {
    const check = await checkModel({
      nodes: 3,
      devices: 1200,
      reconnect: 'full-jitter:300ms:3s',
      afterMs: 8000,
      workers: 2,
    });
    // The live herd is the killed node's share, and the simulation is fed exactly that.
    expect(check.herd.live).toBeGreaterThan(300);
    expect(check.herd.simulated).toBeCloseTo(check.herd.live!, 0);
    expect(check.scenario.detectMs).toBeGreaterThan(0);
    for (const f of [check.peakReconnectAttemptsPerSec, check.t99Seconds, check.t50Seconds]) {
      expect(f.live).not.toBeNull();
      expect(f.simulated).not.toBeNull();
    }
    // The full-size check (pushbench model-check) aims at 15 %; a third of the herd
    // on a loaded CI box is noisier, so this guards against a broken model, not drift.
    expect(check.worstDifference).not.toBeNull();
    expect(check.worstDifference!).toBeLessThan(0.4);
    expect(formatModelCheck(check)).toMatch(/time to 99 % back/);
    // Whether the live half's generator stayed valid is carried; when it did not, the
    // comparison says it does not stand (and the command exits 5).
    expect(typeof check.live.valid).toBe('boolean');
    const saturated = {
      ...check,
      live: { ...check.live, valid: false, invalidBecause: ['62.2% of latency samples lagged'] },
    };
    expect(formatModelCheck(saturated)).toMatch(
      /live run INVALID, the comparison does not stand: 62\.2% of latency samples lagged$/,
    );
  }, 120_000);
});
