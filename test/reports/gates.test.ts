import { describe, expect, it } from 'vitest';
import { PushbenchError } from '../../core/errors.js';
import {
  checkGateTargets,
  describeGateMetrics,
  evaluateGate,
  evaluateGates,
  type Gate,
  type GateInputs,
  type GateResult,
  type GateVerdict,
  LATENCY_SERIES,
  type LatencySummary,
  parseGate,
  parseGates,
  worstVerdict,
} from '../../reports/gates.js';

function summary(overrides: Partial<LatencySummary> = {}): LatencySummary {
  return {
    unit: 'ms',
    count: 1000,
    min: 0.4,
    mean: 8,
    p50: 6,
    p75: 9,
    p90: 14,
    p99: 42,
    p999: 120,
    max: 900,
    ...overrides,
  };
}

function inputs(overrides: Partial<GateInputs> = {}): GateInputs {
  return {
    delivery: { accepted: 10_000, delivered: 10_000, lost: 0 },
    latency: { push: summary(), connect: summary({ max: 4200 }) },
    connections: { requested: 1000, established: 995, heldAtEnd: 990 },
    ...overrides,
  };
}

function delivery(accepted: number, lost: number): GateInputs {
  return inputs({ delivery: { accepted, delivered: accepted - lost, lost } });
}

function badGate(expr: string): PushbenchError {
  try {
    parseGate(expr);
  } catch (err) {
    expect(err).toBeInstanceOf(PushbenchError);
    return err as PushbenchError;
  }
  throw new Error(`expected "${expr}" to be rejected`);
}

describe('parseGate', () => {
  it.each<[string, Omit<Gate, 'expr'>]>([
    ['delivery >= 99.9%', { metric: 'delivery', op: '>=', threshold: 0.999, kind: 'percent' }],
    ['delivery >= 0.999', { metric: 'delivery', op: '>=', threshold: 0.999, kind: 'percent' }],
    ['p99(push) < 50ms', { metric: 'p99(push)', op: '<', threshold: 50, kind: 'duration' }],
    ['p50(d2d) < 1ms', { metric: 'p50(d2d)', op: '<', threshold: 1, kind: 'duration' }],
    ['p999(push) <= 1s', { metric: 'p999(push)', op: '<=', threshold: 1000, kind: 'duration' }],
    ['p99.9(push) < 200ms', { metric: 'p999(push)', op: '<', threshold: 200, kind: 'duration' }],
    ['max(connect) < 5s', { metric: 'max(connect)', op: '<', threshold: 5000, kind: 'duration' }],
    ['mean(push) < 10ms', { metric: 'mean(push)', op: '<', threshold: 10, kind: 'duration' }],
    [
      'connections.held >= 100%',
      { metric: 'connections.held', op: '>=', threshold: 1, kind: 'percent' },
    ],
    [
      'connections.established >= 99%',
      { metric: 'connections.established', op: '>=', threshold: 0.99, kind: 'percent' },
    ],
    ['p90(room) > 250us', { metric: 'p90(room)', op: '>', threshold: 0.25, kind: 'duration' }],
    ['min(push) > 2m', { metric: 'min(push)', op: '>', threshold: 120_000, kind: 'duration' }],
    ['p75(push) < 30', { metric: 'p75(push)', op: '<', threshold: 30, kind: 'duration' }],
  ])('parses %s', (expr, expected) => {
    expect(parseGate(expr)).toEqual({ expr, ...expected });
  });

  it('tolerates whitespace anywhere between tokens', () => {
    expect(parseGate('  p99 ( push )<=50 ms ')).toEqual({
      expr: 'p99 ( push )<=50 ms',
      metric: 'p99(push)',
      op: '<=',
      threshold: 50,
      kind: 'duration',
    });
    expect(parseGate('delivery>=99.999%').threshold).toBe(0.99999);
  });

  it('knows every latency series', () => {
    expect(LATENCY_SERIES).toEqual([
      'push',
      'connect',
      'register',
      'api',
      'd2d',
      'd2d_cold',
      'd2d_warm',
      'room',
      'reconnect',
    ]);
    for (const series of LATENCY_SERIES) {
      expect(parseGate(`p99(${series}) < 1s`).metric).toBe(`p99(${series})`);
    }
  });

  it.each([
    ['p99(pushes) < 50ms', /unknown latency series "pushes"/],
    ['p95(push) < 50ms', /unknown latency statistic "p95"/],
    ['throughput > 5', /unknown metric "throughput"/],
    ['p99(push) == 50ms', /bad operator "=="/],
    ['p99(push) => 50ms', /bad operator "=>"/],
    ['p99(push) 50ms', /missing operator/],
    ['< 50ms', /missing metric/],
    ['p99(push) <', /missing threshold/],
    ['p99(push) < fast', /bad threshold "fast"/],
    ['p99(push) < -5ms', /bad threshold "-5ms"/],
    ['p99(push) < 50h', /bad unit "h"/],
    ['p99(push) < 50%', /bad unit "%"/],
    ['delivery >= 101%', /101% is over 100%/],
    ['delivery >= 99.9', /not a fraction in \[0, 1\]; write 99.9% for a percentage/],
    ['connections.held >= 5ms', /is a percentage/],
    ['delivery >= 100%', /can never be shown by sampling/],
  ])('rejects %s with PB_BAD_GATE naming the problem', (expr, problem) => {
    const err = badGate(expr);
    expect(err.code).toBe('PB_BAD_GATE');
    expect(err.message).toMatch(problem);
    expect(err.message).toContain(`"${expr.trim()}"`);
    expect(err.message).toContain('known metrics: delivery, connections.held');
    expect(err.message).toContain('push|connect|register|api|d2d|d2d_cold|d2d_warm|room|reconnect');
    expect(err.message).not.toContain('\n');
  });
});

describe('parseGates', () => {
  it('returns every gate in order when all are good', () => {
    const gates = parseGates(['delivery >= 99.9%', 'p99(push) < 50ms']);
    expect(gates.map((g) => g.metric)).toEqual(['delivery', 'p99(push)']);
  });

  it('collects every bad expression into one error', () => {
    let caught: unknown;
    try {
      parseGates(['p99(push) < 50ms', 'bogus > 1', 'delivery >= 200%', 'max(room) ~ 1s']);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PushbenchError);
    const err = caught as PushbenchError;
    expect(err.code).toBe('PB_BAD_GATE');
    expect(err.problems).toHaveLength(3);
    expect(err.problems[0]).toMatch(/"bogus > 1": unknown metric "bogus"/);
    expect(err.problems[1]).toMatch(/"delivery >= 200%": 200% is over 100%/);
    expect(err.problems[2]).toMatch(/"max\(room\) ~ 1s": missing operator/);
    expect(err.message).toMatch(/^3 bad gates: /);
    expect(err.message).not.toContain('\n');
  });
});

describe('evaluateGate: delivery', () => {
  const fiveNines = parseGate('delivery >= 99.999%');

  it('passes 0 losses in 299,572 accepted at 99.999%', () => {
    const r = evaluateGate(fiveNines, delivery(299_572, 0));
    expect(r.verdict).toBe('pass');
    expect(r.pass).toBe(true);
    expect(r.actual).toBe(1);
    expect(r.actualText).toBe('100%');
    expect(r.needed).toBeUndefined();
  });

  it('is inconclusive with 0 losses in 299,571 and says how many are needed', () => {
    const r = evaluateGate(fiveNines, delivery(299_571, 0));
    expect(r.verdict).toBe('inconclusive');
    expect(r.pass).toBe(false);
    expect(r.needed).toBe(299_572);
  });

  it('explains an inconclusive result in one line', () => {
    const r = evaluateGate(fiveNines, delivery(20_000, 0));
    expect(r.detail).toBe(
      '0 losses in 20,000 accepted: 99.999% at 95% confidence needs >= 299,572',
    );
  });

  it('counts the losses already seen in the trials needed', () => {
    const r = evaluateGate(fiveNines, delivery(400_000, 2));
    expect(r.verdict).toBe('inconclusive');
    expect(r.needed).toBe(629_578);
    expect(r.actualText).toBe('99.9995%');
    expect(r.detail).toMatch(/^2 losses in 400,000 accepted: .* needs >= 629,578 with no/);
    expect(evaluateGate(fiveNines, delivery(629_578, 2)).verdict).toBe('pass');
  });

  it('fails 5 losses in 10,000 at 99.99%: the observed rate is already too high', () => {
    const r = evaluateGate(parseGate('delivery >= 99.99%'), delivery(10_000, 5));
    expect(r.verdict).toBe('fail');
    expect(r.actual).toBeCloseTo(0.9995, 12);
    expect(r.actualText).toBe('99.95%');
    expect(r.detail).toMatch(/observed loss rate 0\.05% already exceeds 0\.01%/);
  });

  it('is inconclusive, not a pass, when nothing was accepted', () => {
    const r = evaluateGate(fiveNines, delivery(0, 0));
    expect(r.verdict).toBe('inconclusive');
    expect(r.actual).toBeNull();
    expect(r.needed).toBe(299_572);
    expect(r.detail).toMatch(/no messages accepted/);
  });

  it('uses the confidence asked for', () => {
    const r = evaluateGate(fiveNines, delivery(299_572, 0), 0.99);
    expect(r.verdict).toBe('inconclusive');
    expect(r.needed).toBe(Math.ceil(Math.log(0.01) / Math.log1p(-1e-5)));
  });

  it('compares the point estimate for < and <=', () => {
    expect(evaluateGate(parseGate('delivery < 99%'), delivery(100, 2)).verdict).toBe('pass');
    expect(evaluateGate(parseGate('delivery <= 99%'), delivery(100, 0)).verdict).toBe('fail');
  });
});

describe('evaluateGate: latency', () => {
  it('passes and fails on the named statistic', () => {
    const pass = evaluateGate(parseGate('p99(push) < 50ms'), inputs());
    expect(pass).toMatchObject({ verdict: 'pass', pass: true, actual: 42, actualText: '42.0ms' });
    const fail = evaluateGate(parseGate('p999(push) < 100ms'), inputs());
    expect(fail).toMatchObject({ verdict: 'fail', pass: false, actual: 120 });
    expect(fail.detail).toBe('120ms is not < 100ms');
    expect(evaluateGate(parseGate('max(connect) < 5s'), inputs()).actual).toBe(4200);
    expect(evaluateGate(parseGate('mean(push) <= 8ms'), inputs()).verdict).toBe('pass');
    expect(evaluateGate(parseGate('mean(push) < 8ms'), inputs()).verdict).toBe('fail');
  });

  it('is inconclusive with "no samples" for a series without data', () => {
    const absent = evaluateGate(parseGate('p50(d2d) < 1ms'), inputs());
    expect(absent).toMatchObject({ verdict: 'inconclusive', actual: null, detail: 'no samples' });
    const empty = inputs({ latency: { push: summary({ count: 0 }) } });
    expect(evaluateGate(parseGate('p99(push) < 50ms'), empty).detail).toBe('no samples');
  });
});

describe('evaluateGate: connections', () => {
  it('reads held and established against requested', () => {
    const held = evaluateGate(parseGate('connections.held >= 99%'), inputs());
    expect(held).toMatchObject({ verdict: 'pass', actual: 0.99, actualText: '99%' });
    const all = evaluateGate(parseGate('connections.held >= 100%'), inputs());
    expect(all.verdict).toBe('fail');
    const established = evaluateGate(parseGate('connections.established >= 99.6%'), inputs());
    expect(established).toMatchObject({ verdict: 'fail', actual: 0.995, actualText: '99.5%' });
  });

  it('is inconclusive when no connections were requested', () => {
    const none = inputs({ connections: { requested: 0, established: 0, heldAtEnd: 0 } });
    const r = evaluateGate(parseGate('connections.established >= 99%'), none);
    expect(r).toMatchObject({ verdict: 'inconclusive', actual: null });
  });
});

describe('evaluateGates and worstVerdict', () => {
  it('evaluates every gate in order', () => {
    const results = evaluateGates(parseGates(['p99(push) < 50ms', 'p50(d2d) < 1ms']), inputs());
    expect(results.map((r) => r.verdict)).toEqual(['pass', 'inconclusive']);
  });

  function withVerdicts(...verdicts: GateVerdict[]): GateResult[] {
    return verdicts.map((verdict) => ({
      expr: 'x',
      metric: 'x',
      op: '<',
      threshold: 0,
      actual: null,
      actualText: 'n/a',
      verdict,
      pass: verdict === 'pass',
      detail: '',
    }));
  }

  it('ranks fail over inconclusive over pass', () => {
    expect(worstVerdict([])).toBe('pass');
    expect(worstVerdict(withVerdicts('pass', 'pass'))).toBe('pass');
    expect(worstVerdict(withVerdicts('pass', 'inconclusive', 'pass'))).toBe('inconclusive');
    expect(worstVerdict(withVerdicts('inconclusive', 'fail', 'pass'))).toBe('fail');
    expect(worstVerdict(withVerdicts('fail', 'inconclusive'))).toBe('fail');
  });
});

describe('reconnect and skew gates', () => {
  const inputs = {
    delivery: { accepted: 1, delivered: 1, lost: 0 },
    latency: {},
    connections: { requested: 1, established: 1, heldAtEnd: 1 },
  };

  it('reads reconnect.p99 as p99(reconnect) and is inconclusive without reconnects', () => {
    const g = parseGate('reconnect.p99 < 30s');
    expect(g).toMatchObject({ metric: 'p99(reconnect)', threshold: 30_000, kind: 'duration' });
    expect(evaluateGate(g, inputs)).toMatchObject({
      verdict: 'inconclusive',
      detail: 'no samples',
    });
  });

  it('gates on skew.max as a plain ratio', () => {
    const g = parseGate('skew.max < 1.5');
    expect(g).toMatchObject({ kind: 'ratio', threshold: 1.5 });
    expect(evaluateGate(g, { ...inputs, skew: { max: 1.2, final: 1 } }).verdict).toBe('pass');
    expect(evaluateGate(g, { ...inputs, skew: { max: 2, final: 1 } })).toMatchObject({
      verdict: 'fail',
      actualText: '2.00',
    });
    expect(evaluateGate(g, inputs).verdict).toBe('inconclusive');
    expect(() => parseGate('skew.max < 1.5ms')).toThrow(/plain number/);
  });
});

describe('chaos gates', () => {
  const inputs = {
    delivery: { accepted: 0, delivered: 0, lost: 0 },
    latency: {
      'push@eu': {
        count: 10,
        p50: 1,
        p75: 2,
        p90: 3,
        p99: 250,
        p999: 300,
        max: 300,
        min: 1,
        mean: 20,
      },
    },
    connections: { requested: 10, established: 10, heldAtEnd: 10 },
    storm: {
      losses: 1000,
      peakAttemptsPerSec: 800,
      attemptsPerDevice: 1.4,
      notBack: 0,
      lossToBack: { p50: 0.5, p99: 2.5, p100: 3 },
    },
    faults: [
      {
        label: 'kill',
        affected: 1000,
        peakAttemptsPerSec: 800,
        lostMessages: 3,
        attemptsPerDevice: 1.4,
        reconnected: { p50: 0.6, p99: 2.6, p100: null },
        noticed: { p50: 0.05, p99: 0.12, p100: 0.2 },
      },
      {
        label: 'grow',
        affected: 0,
        peakAttemptsPerSec: 0,
        lostMessages: 0,
        attemptsPerDevice: null,
        reconnected: { p50: null, p99: null, p100: null },
        skewSettledAfterS: null,
      },
      {
        label: 'slow-db',
        affected: 0,
        peakAttemptsPerSec: 0,
        lostMessages: 0,
        attemptsPerDevice: null,
        reconnected: { p50: null, p99: null, p100: null },
        windows: {
          before: { latency: { d2d_warm: summary({ p99: 4 }), push: summary({ p99: 10 }) } },
          during: { latency: { d2d_warm: summary({ p99: 5 }), push: summary({ p99: 110 }) } },
        },
      },
      {
        label: 'instant',
        affected: 0,
        peakAttemptsPerSec: 0,
        lostMessages: 0,
        attemptsPerDevice: null,
        reconnected: { p50: null, p99: null, p100: null },
      },
    ],
    regions: {
      rr: { crashed: 3, skew: { max: 2.5, final: 1.1 } },
      lc: { crashed: 0, skew: { max: 1.3, final: 1 } },
    },
    crashed: 3,
  };
  const verdict = (expr: string) => evaluateGate(parseGate(expr), inputs as never).verdict;

  it('reads region-tagged latency, storm, crashed nodes and per-fault figures', () => {
    expect(verdict('p99(push@eu) > 200ms')).toBe('pass');
    expect(verdict('p99(push@us) < 1s')).toBe('inconclusive');
    expect(verdict('storm.losses >= 900')).toBe('pass');
    expect(verdict('storm.t99 < 2s')).toBe('fail');
    expect(verdict('storm.peak < 1000')).toBe('pass');
    expect(verdict('nodes.crashed@rr >= 1')).toBe('pass');
    expect(verdict('nodes.crashed@lc < 1')).toBe('pass');
    expect(verdict('nodes.crashed < 1')).toBe('fail');
    expect(verdict('skew.max@rr < 2')).toBe('fail');
    expect(verdict('fault(kill).affected >= 1000')).toBe('pass');
    expect(verdict('fault(kill).t100 < 10s')).toBe('inconclusive');
    expect(verdict('fault(kill).lost <= 3')).toBe('pass');
    expect(verdict('fault(kill).noticed50 < 100ms')).toBe('pass');
    expect(verdict('fault(kill).noticed99 < 100ms')).toBe('fail');
    expect(verdict('fault(instant).noticed99 < 100ms')).toBe('inconclusive');
    // A scale-up whose skew never settled fails a settle gate rather than being inconclusive.
    expect(verdict('fault(grow).skewSettled < 30s')).toBe('fail');
    expect(verdict('fault(nope).peak < 5')).toBe('inconclusive');
    // The peak as a share of the fault's own devices: 800 of 1,000 in one second.
    expect(verdict('fault(kill).peakShare >= 80%')).toBe('pass');
    expect(verdict('fault(kill).peakShare < 40%')).toBe('fail');
    expect(verdict('fault(grow).peakShare < 40%')).toBe('inconclusive');
  });

  it('takes a statistic of a metric over repeats, or of the one run', () => {
    const r = (p99: number) => ({ ...inputs, latency: { push: summary({ p99 }) } });
    const over = { ...r(30), repeats: [r(10), r(30), r(90)] };
    const gate = (expr: string, on = over) => evaluateGate(parseGate(expr), on as never);
    expect(gate('median(p99(push)) < 40ms').actual).toBe(30);
    expect(gate('mean(p99(push)) < 40ms').actual).toBeCloseTo(43.33, 2);
    expect(gate('max(p99(push)) < 100ms').verdict).toBe('pass');
    expect(gate('min(p99(push)) > 10ms').verdict).toBe('fail');
    // One run: the statistic of its one value.
    expect(gate('median(p99(push)) < 40ms', r(30) as never).actual).toBe(30);
    // `max(push)` stays the push series' maximum.
    expect(parseGate('max(push) < 1s').metric).toBe('max(push)');
    expect(parseGate('median( p99.9(push) ) < 1s').metric).toBe('median(p999(push))');
    expect(() => parseGate('median(p99(pushes)) < 1s')).toThrow(/unknown/);
  });

  it('compares latency while a fault stood with latency before it', () => {
    expect(verdict('fault(slow-db).during.p99(d2d_warm) < 6ms')).toBe('pass');
    expect(verdict('fault(slow-db).before.p99(push) < 20ms')).toBe('pass');
    expect(verdict('fault(slow-db).rise.p99(d2d_warm) < 1.5')).toBe('pass');
    expect(verdict('fault(slow-db).rise.p99(push) < 1.5')).toBe('fail');
    expect(verdict('fault(slow-db).rise.p99.9(push) > 0')).toBe('pass');
    // No samples of a series, an instant fault, an unknown label: nothing to decide on.
    expect(verdict('fault(slow-db).rise.p99(room) < 1.5')).toBe('inconclusive');
    expect(verdict('fault(instant).rise.p99(push) < 1.5')).toBe('inconclusive');
    expect(verdict('fault(nope).during.p99(push) < 1s')).toBe('inconclusive');
    expect(() => parseGate('fault(slow-db).rise.p99(push) < 5ms')).toThrow(/plain number/);
    expect(() => parseGate('fault(slow-db).after.p99(push) < 5ms')).toThrow(/unknown metric/);
    expect(parseGate('fault(slow-db).rise.p99.9(push) < 2').metric).toBe(
      'fault(slow-db).rise.p999(push)',
    );
  });

  it('refuses malformed chaos metrics before the run', () => {
    expect(() => parseGate('storm.bogus < 5')).toThrow(/unknown metric "storm.bogus"/);
    expect(() => parseGate('fault(kill).speed < 5')).toThrow(/unknown metric/);
    expect(() => parseGate('p99(bogus@eu) < 5ms')).toThrow(/unknown metric/);
    expect(() => parseGate('storm.peak < 5ms')).toThrow(/plain number/);
  });
});

describe('gates naming faults and regions', () => {
  it('refuses a label or region the scenario does not have, before the run', () => {
    const known = { labels: ['kill', 'kill-node local-2'], regions: ['eu', 'us'] };
    expect(() =>
      checkGateTargets(parseGates(['fault(kill).t99 < 5s', 'p99(push@us) < 1s']), known),
    ).not.toThrow();
    expect(() => checkGateTargets(parseGates(['fault(kil).t99 < 5s']), known)).toThrow(
      /no timeline action is labelled "kil" \(labels a gate can name: kill\)/,
    );
    expect(() => checkGateTargets(parseGates(['nodes.crashed@mars < 1']), known)).toThrow(
      /no region "mars" \(regions: eu, us\)/,
    );
  });
});

describe('the metric table', () => {
  /** Every name the help text lists, with `<label>` and `<region>` filled in. */
  function listedNames(): string[] {
    return describeGateMetrics()
      .split(/, (?=[a-z<])/)
      .flatMap((entry): string[] => {
        const latency = /^<stat>\(<series>\) with stat (\S+) and series (\S+)/.exec(entry);
        if (latency) {
          const [, stats = '', series = ''] = latency;
          return stats
            .split('|')
            .flatMap((st) =>
              series.split('|').flatMap((se) => [`${st}(${se})`, `${st}(${se}@eu)`]),
            );
        }
        if (entry.endsWith('over --repeat runs')) {
          return ['median', 'mean', 'min', 'max'].map((st) => `${st}(p99(push))`);
        }
        const windowed = /^fault\(<label>\)\.([\w|]+)\.<stat>\(<series>\)$/.exec(entry);
        if (windowed) {
          return (windowed[1] ?? '').split('|').map((w) => `fault(kill).${w}.p99(d2d_warm)`);
        }
        const filled = entry.replace('<label>', 'kill').replace('<region>', 'eu');
        if (filled === 'nodes.crashed[@eu]') return ['nodes.crashed', 'nodes.crashed@eu'];
        const alternatives = /^(.*?)([\w|]+)(@eu)?$/.exec(filled);
        const [, head = '', fields = '', tail = ''] = alternatives ?? [];
        return fields.split('|').map((field) => `${head}${field}${tail}`);
      });
  }

  it('parses every name the known-metrics help lists', () => {
    const names = listedNames();
    expect(names).toContain('storm.t99');
    expect(names).toContain('fault(kill).skewSettled');
    expect(names).toContain('skew.final@eu');
    expect(names).toContain('p99.9(reconnect@eu)');
    expect(names).toContain('fault(kill).rise.p99(d2d_warm)');
    expect(names).toContain('median(p99(push))');
    for (const name of names) expect(() => parseGate(`${name} < 1`), name).not.toThrow();
  });

  it('refuses names of object properties as storm or fault fields', () => {
    for (const name of ['storm.toString', 'storm.constructor', 'fault(kill).toString']) {
      expect(badGate(`${name} < 3`).message).toMatch(`unknown metric "${name}"`);
    }
  });

  it('checks the region of a regional latency gate written with an alias', () => {
    const known = { labels: [], regions: ['eu'] };
    expect(() => checkGateTargets(parseGates(['p99.9(push@eu) < 1s']), known)).not.toThrow();
    expect(() => checkGateTargets(parseGates(['p99.9(push@mars) < 1s']), known)).toThrow(
      /no region "mars"/,
    );
  });
});
