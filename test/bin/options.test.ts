import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, type Option } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  capacityFlags,
  capacitySearch,
  compareFlags,
  type FlagTable,
  modelCheckFlags,
  modelCheckOptions,
  parseRunFlags,
  parseServeFlags,
  planFlags,
  reportFlags,
  runFlags,
  type ServeFlags,
  serveFlags,
  tokenClaims,
  tokenFlags,
} from '../../bin/options.js';
import { defaultResultsDir, nodeDefaults, PushbenchError } from '../../index.js';

/** Parses `args` with the flags of `table`, as the command line does, and returns its flags. */
function parse<Flags>(table: FlagTable<Flags>, args: string[]): Flags {
  const cmd = new Command('test').exitOverride().configureOutput({ writeErr: () => {} });
  for (const option of Object.values<Option>(table)) cmd.addOption(option);
  cmd.parse(args, { from: 'user' });
  return cmd.opts<Flags & Record<string, unknown>>();
}

const tables: Record<string, Readonly<Record<string, Option>>> = {
  run: runFlags,
  compare: compareFlags,
  report: reportFlags,
  capacity: capacityFlags,
  plan: planFlags,
  'model-check': modelCheckFlags,
  serve: serveFlags,
  token: tokenFlags,
};

describe('flag tables', () => {
  for (const [command, table] of Object.entries(tables)) {
    it(`${command}: every key is the field commander files its flag's value under`, () => {
      for (const [key, option] of Object.entries(table)) expect(option.attributeName()).toBe(key);
    });
  }

  it('serve takes every node default from nodeDefaults, and binds 8080 unless told', () => {
    const options = parseServeFlags(
      parse<ServeFlags>(serveFlags, ['--secret', 's', '--api-key', 'k']),
    );
    const { secret, apiKey, d2dAllow, port, seed, ...fromTable } = options.node;
    expect(port).toBe(8080);
    expect(seed).toBeNull();
    expect(d2dAllow).toEqual([]);
    expect(options.processes).toBe(1);
    for (const [key, value] of Object.entries(fromTable)) {
      if (value === undefined) continue; // --redis, --join, --redis-prefix: unset
      expect(value, key).toBe(nodeDefaults[key as keyof typeof nodeDefaults]);
    }
    expect(Object.keys(fromTable).length).toBeGreaterThanOrEqual(13);
  });

  it('serve parses durations and refuses a rate <= 0 naming the flag', () => {
    const flags = parse<ServeFlags>(serveFlags, [
      '--secret',
      's',
      '--api-key',
      'k',
      '--heartbeat-interval',
      '5s',
      '--admission-rate',
      '0',
    ]);
    expect(flags.heartbeatInterval).toBe(5000);
    expect(() => parseServeFlags(flags)).toThrow('--admission-rate must be > 0, got 0');
  });

  it('serve times heartbeats out after 3 intervals unless told, and refuses a timeout no longer than one', () => {
    const serveWith = (...more: string[]) =>
      parseServeFlags(parse<ServeFlags>(serveFlags, ['--secret', 's', '--api-key', 'k', ...more]))
        .node;
    expect(serveWith('--heartbeat-interval', '30s').heartbeatTimeoutMs).toBe(90_000);
    expect(serveWith('--heartbeat-interval', '1s').heartbeatTimeoutMs).toBe(30_000);
    expect(
      serveWith('--heartbeat-interval', '30s', '--heartbeat-timeout', '40s').heartbeatTimeoutMs,
    ).toBe(40_000);
    expect(() => serveWith('--heartbeat-interval', '30s', '--heartbeat-timeout', '30s')).toThrow(
      /^--heartbeat-timeout must be longer than the heartbeat interval \(30\.0s\), got 30\.0s: /,
    );
  });

  it('serve over TLS: both files or none, a ticket-key file of 48 bytes, each bad file named in one line', async () => {
    const { makeCa, makeServerCert } = await import('../../core/tls-certs.js');
    const dir = mkdtempSync(join(tmpdir(), 'pushbench-serve-tls-'));
    try {
      const ca = await makeCa(dir);
      const cert = await makeServerCert(dir, ca, { names: ['localhost'] });
      const serveWith = (...more: string[]) =>
        parseServeFlags(
          parse<ServeFlags>(serveFlags, ['--secret', 's', '--api-key', 'k', ...more]),
        );
      expect(serveWith('--tls-cert', cert.certFile, '--tls-key', cert.keyFile).node.tls).toEqual({
        certFile: cert.certFile,
        keyFile: cert.keyFile,
      });
      expect(() => serveWith('--tls-cert', cert.certFile)).toThrow(
        '--tls-cert and --tls-key go together',
      );
      expect(() => serveWith('--tls-cert', cert.certFile, '--tls-key', join(dir, 'none'))).toThrow(
        /^--tls-key .*none: cannot read it \(ENOENT\)$/,
      );
      // The CA's key is not the certificate's.
      expect(() => serveWith('--tls-cert', cert.certFile, '--tls-key', ca.keyFile)).toThrow(
        /key values mismatch/,
      );
      const short = join(dir, 'tickets');
      writeFileSync(short, 'too short');
      expect(() =>
        serveWith(
          '--tls-cert',
          cert.certFile,
          '--tls-key',
          cert.keyFile,
          '--tls-ticket-keys',
          short,
        ),
      ).toThrow(/must hold exactly 48 bytes, has 9$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('capacity keeps herd search on unless --no-herd, and parses --step-duration to ms', () => {
    const on = parse(capacityFlags, ['--profile', 'small', '--slo', 'p99(push) < 5ms']);
    const off = parse(capacityFlags, [
      '--profile',
      'small',
      '--slo',
      'p99(push) < 5ms',
      '--no-herd',
      '--step-duration',
      '2s',
    ]);
    expect(on.herd).toBe(true);
    expect(off.herd).toBe(false);
    expect(off.stepDuration).toBe(2000);
  });
});

describe('results folders', () => {
  const at = new Date('2026-12-05T10:15:00.123Z');

  it('name the start time in UTC to the second, with no colon', () => {
    expect(defaultResultsDir('smoke', at)).toBe('results/smoke-20261205T101500Z');
  });

  it('a matrix without --out goes to results/<scenario file name>-matrix-<time>', () => {
    const request = parseRunFlags('scenarios/my-test.json', { matrix: ['devices=1,2'] }, at);
    expect(request.kind).toBe('matrix');
    expect(request.kind === 'matrix' && request.options.outDir).toBe(
      'results/my-test-matrix-20261205T101500Z',
    );
  });

  it('each capacity profile gets its own folder, all with one start time', () => {
    const flags = parse(capacityFlags, [
      '--profile',
      'small',
      '--profile',
      'large',
      '--slo',
      'p99(push) < 5ms',
    ]);
    const dirs = ['small', 'large'].map(
      (name) => capacitySearch(flags, { name, input: {} }, at).outDir,
    );
    expect(dirs).toEqual([
      'results/capacity-small-20261205T101500Z',
      'results/capacity-large-20261205T101500Z',
    ]);
    expect(capacitySearch({ ...flags, out: 'o' }, { name: 'small', input: {} }, at).outDir).toBe(
      'o/small',
    );
  });
});

describe('parseRunFlags', () => {
  it('a preflight reads only the flags that size the run, not --matrix', () => {
    const request = parseRunFlags('smoke', {
      preflight: true,
      devices: 10,
      matrix: ['not an axis'],
      set: ['devices.connectTimeout=5s'],
    });
    expect(request).toEqual({
      kind: 'preflight',
      overrides: {
        devices: 10,
        workers: undefined,
        connectRate: undefined,
        set: { 'devices.connectTimeout': '5s' },
      },
    });
  });

  it('refuses --junit with --matrix', () => {
    expect(() => parseRunFlags('smoke', { matrix: ['devices=1,2'], junit: 'j.xml' })).toThrowError(
      PushbenchError,
    );
  });
});

describe('model-check and token', () => {
  it('model-check writes its live run under --out/live', () => {
    const flags = parse(modelCheckFlags, ['--out', 'mc']);
    expect(modelCheckOptions(flags, 1234)).toMatchObject({
      nodes: 4,
      balancer: 'least-connections',
      absorptionPerSec: 1234,
      outDir: 'mc/live',
    });
    // The device count is the check's own unless asked for (4,000 plain, 2,000 over TLS).
    expect(modelCheckOptions(flags, 1234)).not.toHaveProperty('devices');
    expect(modelCheckOptions(parse(modelCheckFlags, ['--devices', '3000']), 1)).toMatchObject({
      devices: 3000,
    });
    // The ramp rate is the check's own unless asked for (400/s over TLS, 1,000 plain).
    expect(modelCheckOptions(flags, 1234)).not.toHaveProperty('connectRate');
    const slower = parse(modelCheckFlags, ['--tls', '--connect-rate', '300']);
    expect(modelCheckOptions(slower, undefined)).toMatchObject({ tls: true, connectRate: 300 });
    expect(() => parse(modelCheckFlags, ['--connect-rate', 'fast'])).toThrow(/--connect-rate/);
    expect(() =>
      modelCheckOptions(parse(modelCheckFlags, ['--connect-rate', '0']), undefined),
    ).toThrow(/^--connect-rate must be at least 1 connect\/s, got 0$/);
  });

  it('a token expires --ttl after now, in whole seconds', () => {
    const flags = parse(tokenFlags, ['--secret', 's', '--device', 'd', '--account', 'a']);
    expect(tokenClaims(flags, 1_000_500)).toEqual({
      deviceId: 'd',
      accountId: 'a',
      expiresAtSec: 1000 + 3600,
    });
  });
});
