import { describe, expect, it } from 'vitest';
import { colourFor, renderSummary } from '../../reports/outputs/text.js';
import { fakeLoad, fakeReport } from '../helpers/report-fixture.js';

const load = (o: { accepted: number; delivered: number; valid?: boolean; pushUs?: number }) =>
  fakeLoad({
    accepted: o.accepted,
    lost: o.accepted - o.delivered,
    pushUs: o.pushUs,
    valid: o.valid,
  });
const report = fakeReport;

describe('report verdicts and exit codes', () => {
  it('passes (exit 0) when every gate passes', () => {
    const r = report(load({ accepted: 5000, delivered: 5000 }), [
      'delivery >= 99.9%',
      'p99(push) < 50ms',
    ]);
    expect(r.verdict).toBe('pass');
    expect(r.exitCode).toBe(0);
    expect(r.devices.heldAtServer).toBe(10);
  });

  it('fails (exit 3) when a latency gate fails', () => {
    const r = report(load({ accepted: 5000, delivered: 5000, pushUs: 80_000 }), [
      'delivery >= 99.9%',
      'p99(push) < 50ms',
    ]);
    expect(r.verdict).toBe('fail');
    expect(r.exitCode).toBe(3);
  });

  it('is inconclusive (exit 4) when too few messages were accepted to show the delivery target', () => {
    const r = report(load({ accepted: 1000, delivered: 1000 }), ['delivery >= 99.9%']);
    expect(r.verdict).toBe('inconclusive');
    expect(r.exitCode).toBe(4);
    expect(r.gates[0]?.needed).toBe(2995);
  });

  it('is invalid (exit 5) when the generator saturated, whatever the gates say', () => {
    const r = report(load({ accepted: 5000, delivered: 5000, valid: false }), ['p99(push) < 50ms']);
    expect(r.verdict).toBe('invalid');
    expect(r.exitCode).toBe(5);
    const text = renderSummary(r, colourFor({ isTTY: false } as NodeJS.WriteStream));
    expect(text).toMatch(/generator saturated/);
    expect(text).toMatch(/verdict: INVALID\s+\(exit 5\)/);
    expect(text).not.toMatch(/and its warnings/);
    // Its warnings (a node over its quota) are printed with the reasons, not dropped.
    r.generator.warnings = ['preflight warning: one node of local under its 0.1-core quota'];
    const warned = renderSummary(r, colourFor({ isTTY: false } as NodeJS.WriteStream));
    expect(warned).toMatch(
      /generator saturated, results invalid:\n( {2}- .*\n)+and its warnings:\n {2}- preflight warning: one node of local under its 0\.1-core quota\n/,
    );
  });

  it("sums HAProxy's retried and redispatched connects from each server's last sample", () => {
    const r = report(load({ accepted: 10, delivered: 10 }), []);
    const text = () => renderSummary(r, colourFor({ isTTY: false } as NodeJS.WriteStream));
    expect(text()).not.toMatch(/haproxy:/);
    const backend = { connections: 0, healthy: true, inRotation: true, conntrackHeld: 0 };
    r.topology.balancer = [
      { t: 1, backends: { a: { ...backend, redispatches: 5 }, b: backend } },
      {
        t: 2,
        backends: { a: { ...backend, redispatches: 7, retries: 2 }, b: { ...backend, retries: 3 } },
      },
      { t: 3, backends: { b: backend } },
    ];
    expect(text()).toMatch(
      /haproxy: 5 connects retried on the same node, 7 redispatched to another \(show stat wretr, wredis\)/,
    );
  });

  it("sums the devices that gave up queued for a connect slot from each node's last sample", () => {
    const r = report(load({ accepted: 10, delivered: 10 }), []);
    const text = () => renderSummary(r, colourFor({ isTTY: false } as NodeJS.WriteStream));
    expect(text()).not.toMatch(/connect slots/);
    const backend = { connections: 0, healthy: true, inRotation: true, conntrackHeld: 0 };
    r.topology.balancer = [
      { t: 1, backends: { a: { ...backend, queueAbandoned: 4, queueTimedOut: 1 }, b: backend } },
      {
        t: 2,
        backends: {
          a: { ...backend, queueAbandoned: 9 },
          b: { ...backend, queueAbandoned: 3, queueTimedOut: 5 },
        },
      },
    ];
    expect(text()).toMatch(
      /balancer: 12 devices gave up while queued for their node's connect slots \(maxConnecting\), 5 reset at the queue timeout; no node saw them/,
    );
    // Without a queue timeout, no word of one.
    r.topology.balancer = [{ t: 1, backends: { a: { ...backend, queueAbandoned: 2 } } }];
    expect(text()).toMatch(
      /balancer: 2 devices gave up while queued for their node's connect slots \(maxConnecting\); no node saw them/,
    );
  });

  it('keeps the encoded histograms so a report can be re-rendered', () => {
    const r = report(load({ accepted: 10, delivered: 10 }), []);
    expect(typeof r.histograms.push).toBe('string');
    expect(r.latency.push.count).toBe(10);
  });
});
