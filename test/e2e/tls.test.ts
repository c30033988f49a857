/**
 * `node-kill` over TLS, reduced: devices connect `wss://` to nodes holding the
 * run's own certificate, one node is SIGKILLed, and its herd reconnects to the
 * survivors. With the region's ticket keys shared the herd resumes its
 * sessions; with each node's own keys it makes full handshakes. The report
 * shows which (the `tls_full` and `tls_resumed` series), and the run leaves no
 * key behind.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeCa, makeServerCert } from '../../core/tls-certs.js';
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
      'timeline[0].at': '2s',
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

  it("routing by health between two regions each ending TLS at its HAProxy: the global entry checks them over TLS and moves a dead region's devices to the other", async () => {
    const haproxy = { engine: 'haproxy' as const, health: { interval: '200ms', timeout: '200ms' } };
    const { report } = await run(
      {
        name: 'tls-health-routing',
        topology: {
          regions: [
            { name: 'eu', nodes: 1, balancer: haproxy },
            { name: 'us', nodes: 1, balancer: haproxy },
          ],
          routing: { mode: 'health', health: { interval: '200ms', timeout: '300ms' } },
          tls: 'balancer',
        },
        devices: { count: 200, connectRate: 200, reconnect: 'full-jitter:200ms:1s' },
        traffic: { direct: { rate: 20 } },
        duration: '7s',
        timeline: [{ at: '2s', action: 'kill-node', node: 'eu-1', label: 'eu down' }],
      },
      { write: false, workers: 1 },
    );
    expect(report.topology.network?.engine).toBe('kernel');
    const first = report.timeline.findIndex((p) => p.phase === 'closing');
    const closingAt = first > 0 ? report.timeline[first - 1]!.t : Number.POSITIVE_INFINITY;
    const last = report.topology.balancer.filter((b) => b.t < closingAt).at(-1)!;
    // Both regions were healthy over TLS until eu's node died; then eu's devices went to us.
    expect(last.regionsHealthy).toEqual({ eu: false, us: true });
    expect(last.routed?.eu?.us).toBeGreaterThanOrEqual(100);
    expect(last.routed?.us).toEqual({ us: 100 });
    expect(last.backends['us-1']!.connections).toBeGreaterThanOrEqual(198);
    expect(report.devices.heldAtEnd).toBe(200);
    // Every device's first handshake was full, with the HAProxy of its home region; with
    // the run's ticket keys shared by every HAProxy, eu's herd resumed its sessions at us's.
    expect(report.latency.tls_full?.count).toBe(200);
    expect(report.latency.tls_resumed?.count).toBeGreaterThanOrEqual(100);
  }, 120_000);
});

describe("a user's own certificate (topology.tlsCertificate)", () => {
  it('serves it, devices trust the CA given and ask for the name given; a key that cannot be read is one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-user-cert-'));
    try {
      const ca = await makeCa(dir, 'user CA');
      const cert = await makeServerCert(dir, ca, {
        names: ['push.example.test'],
        keyType: 'rsa-2048',
      });
      const certificate = {
        cert: cert.certFile,
        key: cert.keyFile,
        ca: ca.certFile,
        servername: 'push.example.test',
      };
      const { report } = await run('smoke', {
        workers: 2,
        outDir: mkdtempSync(join(tmpdir(), 'pb-user-cert-run-')),
        devices: 50,
        connectRate: 100,
        rate: 20,
        duration: '2s',
        set: { 'topology.tls': 'node', 'topology.tlsCertificate': certificate },
      });
      expect(report.devices.heldAtServer).toBe(50);
      expect(report.latency.tls_full?.count).toBe(50);
      // Every push the node accepted reached its device over the user's TLS.
      expect(report.delivery.lost).toBe(0);
      expect(report.delivery.delivered).toBe(report.delivery.accepted);
      // The user's files stay where they are; only the run's own folder goes.
      expect(readdirSync(dir)).toEqual(expect.arrayContaining(['server.pem', 'server.key']));
      await expect(
        run('smoke', {
          write: false,
          devices: 10,
          duration: '1s',
          set: {
            'topology.tls': 'node',
            'topology.tlsCertificate': { ...certificate, key: join(dir, 'nope.key') },
          },
        }),
      ).rejects.toThrow(/^topology\.tlsCertificate\.key .*nope\.key: cannot read it \(ENOENT\)$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
