import { describe, expect, it } from 'vitest';
import { checkModel, formatModelCheck, modelVerdict } from '../../capacity/model-check.js';

describe('the verdict of the model check', () => {
  const fig = (live: number, simulated: number, lo: number | null, hi: number | null) => ({
    live,
    simulated,
    difference: (simulated - live) / live,
    liveCi: { lo, hi },
  });
  it('passes within 15 %, and calls a miss inside the live interval inconclusive', () => {
    expect(modelVerdict([fig(700, 760, 650, 750), fig(2.5, 2.8, 2.3, 2.9)])).toBe('within');
    // t99 +28 % off, but a herd of 250 puts the live p99 anywhere in 2.55..4.31 s.
    expect(modelVerdict([fig(456, 477, 414, 498), fig(3.31, 4.24, 2.55, 4.31)])).toBe(
      'not-told-apart',
    );
    // An open upper bound takes any larger simulated value.
    expect(modelVerdict([fig(456, 477, 414, 498), fig(3.31, 4.24, 2.55, null)])).toBe(
      'not-told-apart',
    );
    // Outside the target and outside the interval: the model is off.
    expect(modelVerdict([fig(718, 860, 665, 771), fig(2.37, 2.6, 2.2, 2.5)])).toBe('off');
    expect(modelVerdict([fig(700, 760, 650, 750), fig(2.37, 3.61, 2.2, 3.0)])).toBe('off');
    // No interval (an old report) or a missing figure: a miss stays a miss.
    expect(modelVerdict([{ live: 2, simulated: 3, difference: 0.5 }])).toBe('off');
    expect(modelVerdict([{ live: null, simulated: 3, difference: null }])).toBe('off');
  });
});

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
    // The live times carry their order-statistic intervals, the peak its count's.
    expect(check.t99Seconds.liveCi).toBeDefined();
    expect(check.peakReconnectAttemptsPerSec.liveCi?.lo).toBeLessThan(
      check.peakReconnectAttemptsPerSec.live!,
    );
    expect(formatModelCheck(check)).toMatch(/live 95% interval/);
    expect(['within', 'not-told-apart', 'off']).toContain(check.verdict);
    expect(formatModelCheck({ ...check, verdict: 'not-told-apart' })).toMatch(
      /cannot tell the model from the run \(inconclusive\); use more devices/,
    );
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
