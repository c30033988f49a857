/**
 * The kernel engine's bookkeeping of faults that need no kernel: overlapping
 * latencies on one node's link play the largest delay, as on userland, and
 * lifting one leaves the others standing.
 */
import { describe, expect, it } from 'vitest';
import type { KernelFabric, KernelHost } from '../../topology/kernel/fabric.js';
import type { LatencyLink } from '../../topology/kernel/links.js';
import { KernelNetwork } from '../../topology/kernel/network.js';

/** A latency link that records what it was told. */
function recordingLink(): LatencyLink & { played: string[] } {
  const played: string[] = [];
  return {
    port: 7002,
    played,
    set: (delayMs, jitterMs) => played.push(`${delayMs}±${jitterMs}`),
    clear: () => played.push('none'),
    cut: () => played.push('cut'),
    restore: () => played.push('restore'),
    stop: () => {},
  };
}

describe('KernelNetwork latency', () => {
  it('overlapping latencies on a node play the largest delay; lifting one leaves the rest', async () => {
    const link = recordingLink();
    const host = { name: 'local-1', namespace: 'x', address: '10.0.0.2' } as KernelHost;
    const net = await KernelNetwork.start(
      {} as KernelFabric,
      [],
      (nodeId) => (nodeId === 'local-1' ? { host, region: 'local', port: 7001 } : undefined),
      () => link,
      (scope) => ('nodeId' in scope ? [scope.nodeId] : ['local-1']),
      () => [],
      { addresses: [], region: 'local' },
    );
    const region = await net.applyFault({
      kind: 'latency',
      scope: { region: 'local' },
      delayMs: 100,
      jitterMs: 5,
    });
    const node = await net.applyFault({
      kind: 'latency',
      scope: { nodeId: 'local-1' },
      delayMs: 300,
      jitterMs: 0,
    });
    const small = await net.applyFault({
      kind: 'latency',
      scope: { nodeId: 'local-1' },
      delayMs: 50,
      jitterMs: 0,
    });
    expect(link.played).toEqual(['100±5', '300±0', '300±0']);
    await net.clearFault(node);
    expect(link.played.at(-1)).toBe('100±5');
    await net.clearFault(region);
    expect(link.played.at(-1)).toBe('50±0');
    await net.clearFault(small);
    expect(link.played.at(-1)).toBe('none');
    await net.stop();
  });
});
