import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../index.js';

describe('a reduced smoke run, programmatically', () => {
  it('keeps the ledger consistent and records one latency per delivered message', async () => {
    const phases: string[] = [];
    const { report, reportPath } = await run('smoke', {
      devices: 300,
      rate: 300,
      duration: '3s',
      workers: 2,
      connectRate: 1000,
      outDir: mkdtempSync(join(tmpdir(), 'pb-e2e-')),
      listener: { phase: (p) => phases.push(p) },
    });
    expect(reportPath).toMatch(/report\.json$/);
    expect(phases).toEqual(['connecting', 'publishing', 'draining', 'closing', 'done']);

    const d = report.delivery;
    expect(d.sent).toBe(900);
    expect(d.delivered + d.lost).toBe(d.accepted);
    expect(d.accepted + d.rejected).toBe(d.sent);
    expect(d.delivered).toBeGreaterThan(0);
    expect(report.latency.push.count).toBe(d.delivered + d.unconfirmed);
    expect(report.latency.push.p50).toBeGreaterThan(0);
    expect(report.latency.push.p99).toBeGreaterThanOrEqual(report.latency.push.p50);

    expect(report.devices.requested).toBe(300);
    expect(report.devices.established + report.devices.failed).toBe(300);
    expect(report.devices.heldAtServer).toBe(report.devices.heldAtEnd);
    expect(report.latency.connect.count).toBe(report.devices.established);

    expect(report.gates.map((g) => g.expr)).toEqual([
      'delivery >= 99.9%',
      'p99(push) < 50ms',
      'connections.held >= 100%',
    ]);
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.timeline.length).toBeGreaterThan(2);
    expect(['pass', 'fail', 'inconclusive', 'invalid']).toContain(report.verdict);
  });
});
