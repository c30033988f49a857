import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';

const BIN = ['--import', 'tsx', 'bin/pushbench.ts'];

function cli(...args: string[]) {
  return execa(process.execPath, [...BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
}

/** A usage error: exit 2, exactly one line on stderr, no stack trace. */
async function expectUsageError(args: string[], pattern: RegExp): Promise<void> {
  const r = await cli(...args);
  expect(r.exitCode, r.stderr).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^pushbench: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('pushbench CLI usage errors exit 2 with one line', () => {
  it('unknown scenario', () => expectUsageError(['run', 'nope'], /unknown scenario "nope".*smoke/));
  it('zero devices', () =>
    expectUsageError(['run', 'smoke', '--devices', '0'], /devices\.count: must be >= 1, got 0/));
  it('negative rate', () =>
    expectUsageError(
      ['run', 'smoke', '--rate', '-5'],
      /traffic\.direct\.rate: must be >= 0, got -5/,
    ));
  it('non-numeric devices', () =>
    expectUsageError(['run', 'smoke', '--devices', 'many'], /--devices must be a whole number/));
  it('bad duration', () => expectUsageError(['run', 'smoke', '--duration', 'soon'], /duration/));
  it('unknown flag', () =>
    expectUsageError(['run', 'smoke', '--bogus'], /unknown option '--bogus'/));
  it('unknown command', () => expectUsageError(['fly'], /unknown command 'fly'/));
  it('bad gate', () => expectUsageError(['run', 'smoke', '--gate', 'p99(push) < soon'], /gate/));
  it('unknown gate metric', () =>
    expectUsageError(['run', 'smoke', '--gate', 'happiness > 3'], /happiness/));
  it('serve without a secret', () => expectUsageError(['serve', '--api-key', 'k'], /--secret/));
  it('a heartbeat timeout no longer than the interval, in a scenario and in serve', async () => {
    await expectUsageError(
      ['run', 'smoke', '--set', 'topology.heartbeatTimeout=5s'],
      /topology\.heartbeatTimeout: must be longer than the heartbeat interval \(10\.0s\), got 5000ms/,
    );
    await expectUsageError(
      [
        'serve',
        '--secret',
        's',
        '--api-key',
        'k',
        '--heartbeat-interval',
        '30s',
        '--heartbeat-timeout',
        '30s',
      ],
      /--heartbeat-timeout must be longer than the heartbeat interval/,
    );
  });
  it('a fault after the ramp that would never fire, and an anchor that does not exist', async () => {
    await expectUsageError(
      ['run', 'node-kill', '--set', 'duration=5s'],
      /timeline\[0\]\.at: 6000ms after the ramp is not before the end of publishing \(duration 5000ms\): it would never fire/,
    );
    await expectUsageError(
      ['run', 'node-kill', '--set', 'timeline[0].after=later'],
      /timeline\[0\]\.after: must be one of start, ramp, got "later"/,
    );
  });
  it('a network engine that does not exist', () =>
    expectUsageError(
      ['run', 'smoke', '--set', 'topology.network=ebpf'],
      /topology\.network: must be one of userland, kernel, auto, got "ebpf"/,
    ));
  it('the kernel engine asked for what it does not play (least-connections in nft DNAT)', () =>
    expectUsageError(
      [
        'run',
        'node-kill',
        '--set',
        'topology.network=kernel',
        '--set',
        'topology.balancer.engine=kernel',
        '--set',
        'topology.balancer.algorithm=least-connections',
      ],
      process.getuid?.() === 0
        ? /the kernel network engine does not play region local: balancer.engine "kernel" cannot do least-connections \(the kernel does not count connections per backend\)/
        : /the kernel network engine needs root/,
    ));
  it('HAProxy asked for on the userland engine', () =>
    expectUsageError(
      [
        'run',
        'node-kill',
        '--set',
        'topology.network=userland',
        '--set',
        'topology.balancer.engine=haproxy',
      ],
      /balancer\.engine "haproxy" runs on the kernel network engine/,
    ));
  it('chaos scenario file with problems listed by path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-cli-'));
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'bad',
        devices: { count: 10 },
        duration: '1s',
        topology: { regions: [{ name: 'eu', nodes: 0 }] },
        timeline: [{ at: '1s', action: 'kill-node', node: 'eu-9' }],
      }),
    );
    return expectUsageError(
      ['run', file],
      /topology\.regions\[0\]\.nodes: must be >= 1, got 0.*timeline\[0\]\.node: no node "eu-9"/,
    );
  });
  it('capacity with an unknown profile', () =>
    expectUsageError(
      ['capacity', '--profile', 'nope', '--slo', 'p99(push) < 5ms'],
      /unknown profile "nope"/,
    ));
  it('capacity with a bad SLO', () =>
    expectUsageError(['capacity', '--profile', 'small', '--slo', 'p99(pushes) < 5ms'], /pushes/));
  it('plan from a missing capacity report', () =>
    expectUsageError(
      ['plan', '--devices', '10', '--from', '/nope/capacity.json'],
      /does not exist/,
    ));
  it('plan from a file that is not a capacity report', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-cli-'));
    writeFileSync(join(dir, 'x.json'), '{"kind":"other"}');
    return expectUsageError(
      ['plan', '--devices', '10', '--from', join(dir, 'x.json')],
      /not a pushbench capacity report/,
    );
  });
  it('model-check with a bad reconnect policy', () =>
    expectUsageError(
      ['model-check', '--reconnect', 'bogus'],
      /devices\.reconnect: must be one of/,
    ));
  it('token with a bad device id', () =>
    expectUsageError(['token', '--secret', 's', '--device', 'a b', '--account', 'a'], /--device/));

  it('serve with an unreachable Redis', () =>
    expectUsageError(
      [
        'serve',
        '--port',
        '0',
        '--secret',
        's',
        '--api-key',
        'k',
        '--redis',
        'redis://127.0.0.1:6390',
      ],
      /cannot reach Redis at redis:\/\/127\.0\.0\.1:6390/,
    ));
  it('serve joining a hub that is not there', () =>
    expectUsageError(
      ['serve', '--port', '0', '--secret', 's', '--api-key', 'k', '--join', 'http://127.0.0.1:9'],
      /cannot reach the cluster hub/,
    ));
  it('serve with both --redis and --join', () =>
    expectUsageError(
      [
        'serve',
        '--secret',
        's',
        '--api-key',
        'k',
        '--redis',
        'redis://127.0.0.1:6379',
        '--join',
        'http://127.0.0.1:9',
      ],
      /either --redis or --join/,
    ));
  it('serve with a bad slow-consumer policy', () =>
    expectUsageError(
      ['serve', '--secret', 's', '--api-key', 'k', '--slow-consumer', 'panic'],
      /slow-consumer/,
    ));
  it('serve with zero processes', () =>
    expectUsageError(
      ['serve', '--secret', 's', '--api-key', 'k', '--processes', '0'],
      /--processes must be 1-256, got 0/,
    ));
  it('a run too big for this machine is refused before anything starts, saying what caps it', () =>
    expectUsageError(
      ['run', 'hold', '--devices', '5000000'],
      /5,000,000 devices will not fit: memory.*run at most [\d,]+ devices here/,
    ));
  it("a balanced run past the fabric's open files names the fabric and how to lift it", () =>
    expectUsageError(
      ['run', 'node-kill', '--devices', '15000'],
      /network fabric.*needs 30,200 but [\d,]+ are allowed: the fabric is one process/,
    ));
  it('source addresses outside 127.0.0.0/8', () =>
    expectUsageError(
      ['run', 'hold', '--set', 'placement.sourceAddresses=["10.0.0.1"]'],
      /placement\.sourceAddresses: must be a non-empty list of loopback addresses.*"10\.0\.0\.1"/,
    ));
  it('serve with a bad d2d allow-list', () =>
    expectUsageError(
      ['serve', '--secret', 's', '--api-key', 'k', '--d2d-allow', 'nope'],
      /--d2d-allow needs/,
    ));

  it('a scenario file with several problems lists them all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-'));
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({ name: 'bad', devices: { count: -1 }, duration: 'x', colour: 1 }),
    );
    await expectUsageError(
      ['run', file],
      /3 problems: .*colour: unknown field.*devices\.count: must be >= 1.*duration/,
    );
  });

  it('a scenario file that is not JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-'));
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{ nope');
    await expectUsageError(['run', file], /not valid JSON/);
  });

  it('a port in use', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as { port: number }).port;
    try {
      await expectUsageError(
        ['serve', '--port', String(port), '--secret', 's', '--api-key', 'k'],
        /already in use/,
      );
    } finally {
      blocker.close();
    }
  });
});

describe('pushbench list and token', () => {
  it('lists the built-in scenarios', async () => {
    const r = await cli('list');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^smoke\s+/m);
    // Every name stands apart from its description, the longest included.
    for (const line of r.stdout.trim().split('\n')) expect(line).toMatch(/^[a-z0-9-]+ {2,}\S/);
    expect(r.stdout).toMatch(/^balancer-scale-up {2,}capacity-limited/m);
  });
});

describe('pushbench serve', () => {
  it('prints its listening line, pushes to a ws client holding a token from `pushbench token`, and exits 0 on SIGTERM', async () => {
    const server = execa(
      process.execPath,
      [
        ...BIN,
        'serve',
        '--port',
        '0',
        '--secret',
        'sec',
        '--api-key',
        'key',
        '--drain-window',
        '200ms',
      ],
      {
        reject: false,
      },
    );
    const line = await new Promise<string>((resolve) => {
      let out = '';
      server.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0] ?? '');
      });
    });
    const m = /^listening (ws:\/\/127\.0\.0\.1:\d+\/ws) (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
    expect(m, line).not.toBeNull();
    const [, wsUrl, httpUrl] = m!;
    const tok = await cli(
      'token',
      '--secret',
      'sec',
      '--device',
      'phone-1',
      '--account',
      'acme',
      '--ttl',
      '10m',
    );
    expect(tok.exitCode).toBe(0);
    const ws = new WebSocket(`${wsUrl}?token=${tok.stdout.trim()}`);
    await once(ws, 'open');
    const got = once(ws, 'message');
    const res = await fetch(`${httpUrl}/v1/push/phone-1`, {
      method: 'POST',
      headers: { authorization: 'Bearer key' },
      body: JSON.stringify({ payload: { n: 1 }, id: 'x1' }),
    });
    expect(res.status).toBe(200);
    const [data] = await got;
    expect(JSON.parse(String(data))).toEqual({ type: 'push', id: 'x1', payload: { n: 1 } });
    const closed = once(ws, 'close');
    server.kill('SIGTERM');
    const [code] = await closed;
    expect(code).toBe(1001);
    const result = await server;
    expect(result.exitCode).toBe(0);
  });
});

describe('pushbench run', () => {
  it('exits 3 when a gate fails and writes report.json with the failed gate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-run-'));
    const r = await cli(
      'run',
      'smoke',
      '--devices',
      '40',
      '--rate',
      '50',
      '--duration',
      '1s',
      '--workers',
      '1',
      '--gate',
      'p50(push) < 1us',
      '--out',
      dir,
    );
    expect(r.exitCode, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/verdict: FAIL/);
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    expect(report.verdict).toBe('fail');
    expect(report.exitCode).toBe(3);
    const byExpr = Object.fromEntries(
      report.gates.map((g: { expr: string; verdict: string }) => [g.expr, g.verdict]),
    );
    // 50 messages cannot show 99.9 % delivery at 95 % confidence: inconclusive, not pass.
    expect(byExpr).toMatchObject({
      'p50(push) < 1us': 'fail',
      'delivery >= 99.9%': 'inconclusive',
    });
  });

  it('prints the report as JSON on stdout with --json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-run-'));
    const r = await cli(
      'run',
      'smoke',
      '--devices',
      '20',
      '--rate',
      '20',
      '--duration',
      '1s',
      '--workers',
      '1',
      '--json',
      '--out',
      dir,
    );
    const report = JSON.parse(r.stdout);
    expect(report.scenario).toBe('smoke');
    expect(report.devices.requested).toBe(20);
    expect(r.exitCode).toBe(report.exitCode);
  });
});

describe('pushbench run --preflight', () => {
  it('prints where a 250,000-device hold would go and what it needs, and exits 0', async () => {
    const r = await cli('run', 'hold', '--devices', '250000', '--preflight');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^preflight: 250,000 devices on \d+ load processes × 1 thread; local nodes \d+ processes each; 123 source addresses/,
    );
    expect(r.stdout).toMatch(/^ok {3}open files, busiest load-generator process/m);
    expect(r.stdout).toMatch(/^ok {3}memory, all processes and kernel sockets/m);
    // 2,000 connects/s and 8,333 heartbeats/s are more CPU than two cores give: a warning, not a refusal.
    expect(r.stdout).toMatch(/^WARN cpu estimate, both ends \(2,000 connects\/s/m);
    expect(r.stdout).toMatch(/lower --connect-rate to about 1,[0-9]00/);
    const slower = await cli(
      'run',
      'hold',
      '--devices',
      '250000',
      '--connect-rate',
      '1000',
      '--preflight',
    );
    expect(slower.exitCode, slower.stderr).toBe(0);
    expect(slower.stdout).toMatch(/^ok {3}cpu estimate/m);
  });
});
