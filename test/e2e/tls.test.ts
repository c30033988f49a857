/**
 * `node-kill` over TLS, reduced: devices connect `wss://` to nodes holding the
 * run's own certificate, one node is SIGKILLed, and its herd reconnects to the
 * survivors. With the region's ticket keys shared the herd resumes its
 * sessions; with each node's own keys it makes full handshakes. The report
 * shows which (the `tls_full` and `tls_resumed` series), and the run leaves no
 * key behind.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../index.js';

const isRoot = process.getuid?.() === 0;

async function nodeKillOverTls(tickets: 'shared' | 'per-node', more: Record<string, string> = {}) {
  const { report } = await run('node-kill', {
    workers: 2,
    outDir: mkdtempSync(join(tmpdir(), 'pb-tls-node-kill-')),
    devices: 300,
    connectRate: 150,
    rate: 50,
    duration: '8s',
    set: {
      'topology.tls': 'node',
      'topology.tlsTickets': tickets,
      'timeline[0].at': '4s',
      'devices.reconnect': 'full-jitter:200ms:2s',
      ...more,
    },
  });
  return report;
}

describe('node-kill over TLS, reduced', () => {
  for (const tickets of ['shared', 'per-node'] as const) {
    it(`tickets ${tickets}: the herd ${tickets === 'shared' ? 'resumes its sessions on the survivors' : 'makes full handshakes'}`, async () => {
      const report = await nodeKillOverTls(tickets);
      const kill = report.faults.find((f) => f.label === 'kill');
      expect(kill?.fired).toBe(true);
      expect(kill!.affected).toBeGreaterThan(50);
      expect(kill!.notBack).toBe(0);
      expect(report.devices.heldAtServer).toBe(300);
      const full = report.latency.tls_full?.count ?? 0;
      const resumed = report.latency.tls_resumed?.count ?? 0;
      // Every connect that opened went through one TLS handshake, full or resumed.
      expect(full + resumed).toBe(report.latency.connect?.count);
      // ... and each is split into TCP, TLS and upgrade.
      expect(report.latency.tcp?.count).toBe(full + resumed);
      expect(report.latency.upgrade?.count).toBe(full + resumed);
      if (tickets === 'shared') {
        expect(full).toBe(300);
        expect(resumed).toBe(kill!.affected);
      } else {
        expect(resumed).toBe(0);
        expect(full).toBe(300 + kill!.affected);
      }
      // The run's CA, certificate and keys went with it.
      expect(
        readdirSync(tmpdir()).filter((n) => n.startsWith(`pushbench-tls-${process.pid}-`)),
      ).toEqual([]);
    }, 120_000);
  }
});

describe.skipIf(!isRoot)('node-kill over TLS ended by HAProxy (kernel engine, root)', () => {
  it('HAProxy terminates TLS with the run certificate; the herd reconnects to it and resumes', async () => {
    const report = await nodeKillOverTls('shared', {
      'topology.tls': 'balancer',
      'topology.balancer.engine': 'haproxy',
    });
    expect(report.topology.network).toMatchObject({ engine: 'kernel' });
    const kill = report.faults.find((f) => f.label === 'kill');
    expect(kill!.affected).toBeGreaterThan(50);
    expect(kill!.notBack).toBe(0);
    expect(report.devices.heldAtServer).toBe(300);
    // The devices' TLS is HAProxy's: a node's death costs them no handshake with a
    // new server, only a resumed one with the same HAProxy.
    expect(report.latency.tls_full?.count).toBe(300);
    expect(report.latency.tls_resumed?.count).toBe(kill!.affected);
    expect(
      readdirSync(tmpdir()).filter((n) => n.startsWith(`pushbench-tls-${process.pid}-`)),
    ).toEqual([]);
  }, 120_000);
});
