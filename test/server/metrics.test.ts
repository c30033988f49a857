import { describe, expect, it } from 'vitest';
import { NODE_METRICS, NodeMetrics } from '../../server/metrics.js';

describe('NodeMetrics', () => {
  it('exposes every listed metric once, in list order, with its type and help', () => {
    const prom = new NodeMetrics().toPrometheus();
    const typed = [...prom.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => ({
      name,
      type,
    }));
    expect(typed).toEqual(NODE_METRICS.map(({ name, type }) => ({ name, type })));
    for (const { name, help } of NODE_METRICS) expect(prom).toContain(`# HELP ${name} ${help}\n`);
  });

  it('counts by label set, sums a counter over its labels and sets gauges', () => {
    const m = new NodeMetrics();
    m.inc('pushbench_disconnects_total', { reason: 'replaced' });
    m.inc('pushbench_disconnects_total', { reason: 'replaced' }, 2);
    m.inc('pushbench_disconnects_total', { reason: 'slow_consumer' });
    m.set('pushbench_connections', 7);
    m.observe('pushbench_d2d_seconds', 0.002);
    expect(m.get('pushbench_disconnects_total', { reason: 'replaced' })).toBe(3);
    expect(m.total('pushbench_disconnects_total')).toBe(4);
    expect(m.get('pushbench_connections')).toBe(7);
    expect(m.toJSON().pushbench_d2d_seconds).toEqual({ count: 1, sum: 0.002 });
  });

  it('refuses, at compile time, a name that is not in the list or of the wrong type', () => {
    const m = new NodeMetrics();
    // These lines are checked by `npm run typecheck` (tsc over test/): remove a directive
    // and the typo compiles, which tsc then reports as an unused @ts-expect-error.
    // @ts-expect-error a typo in a counter's name
    expect(() => m.inc('pushbench_conects_total')).toThrow(/unknown metric/);
    // @ts-expect-error a gauge is set, not incremented
    m.inc('pushbench_connections');
    // @ts-expect-error a histogram is observed, not set
    m.set('pushbench_d2d_seconds', 1);
    // @ts-expect-error a counter is incremented, not observed
    m.observe('pushbench_acks_total', 1);
    expect(m.total('pushbench_acks_total')).toBe(0);
  });
});
