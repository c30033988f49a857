/**
 * What TLS costs a connect, at both ends, beside `openssl speed` on this box:
 * the four rounds of capacity/handshakes.ts (plain `ws://`; `wss://` with a
 * full handshake each; `wss://` keeping each device's ticket; the same devices
 * resumed), CPU per connect at the node and the client, and RSS per held
 * device at each end (the first TLS round on a fresh node process is the fair
 * memory figure: later rounds reuse the heap the earlier ones grew), and in
 * the same run Node's own floor (bench/tls-floor.ts: raw `node:tls` at both
 * ends, a fixed 101) with pushbench / floor ratios.
 *
 *   npx tsx bench/tls-cost.ts [connections=5000] [ec-p256|rsa-2048]
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { type HandshakeRound, measureHandshakes } from '../capacity/handshakes.js';
import { makeRunTls, type TlsKeyType } from '../core/tls-certs.js';
import { measureTlsFloor } from './tls-floor.js';

const devices = Number(process.argv[2] ?? 5000);
const keyType = (process.argv[3] ?? 'ec-p256') as TlsKeyType;
if (keyType !== 'ec-p256' && keyType !== 'rsa-2048') {
  throw new Error(`key type must be ec-p256 or rsa-2048, got ${keyType}`);
}

function row(r: HandshakeRound): string {
  return (
    `${r.label.padEnd(38)}${String(r.open).padStart(6)}${String(r.failed).padStart(7)}` +
    `${String(r.resumed).padStart(8)}${r.connectsPerSec.toFixed(0).padStart(9)}` +
    `${r.nodeUs.toFixed(0).padStart(8)}${r.clientUs.toFixed(0).padStart(9)}` +
    `${(r.nodeUs + r.clientUs).toFixed(0).padStart(7)}${r.nodeKb.toFixed(2).padStart(9)}${r.clientKb.toFixed(2).padStart(10)}`
  );
}

const c = await measureHandshakes(devices, keyType);
console.log(
  `TLS vs plain: ${devices} devices per round, node and client on the same ${availableParallelism()} cores; ${keyType}, TLS 1.3\n`,
);
console.log(
  `${'round'.padEnd(38)}  open failed resumed  conns/s  node us client us   both  node KB client KB`,
);
for (const r of [c.plain, c.full, c.firstWithTickets, c.resumed]) console.log(row(r));
const runTls = await makeRunTls(keyType);
const floor = await measureTlsFloor(runTls, devices).finally(() => runTls.remove());
for (const f of floor) {
  console.log(
    `${f.label.padEnd(38)}${String(f.open).padStart(6)}${'0'.padStart(7)}${String(f.resumed).padStart(8)}` +
      `${f.connectsPerSec.toFixed(0).padStart(9)}${f.serverUs.toFixed(0).padStart(8)}${f.clientUs.toFixed(0).padStart(9)}` +
      `${(f.serverUs + f.clientUs).toFixed(0).padStart(7)}`,
  );
}
const ratio = (ours: number, theirs: number) => (theirs > 0 ? (ours / theirs).toFixed(2) : '-');
const [floorFull, floorResumed] = floor as [(typeof floor)[0], (typeof floor)[0]];
console.log('');
console.log(
  `pushbench / node:tls floor, CPU per connect: full handshake node ${ratio(c.full.nodeUs, floorFull.serverUs)}, ` +
    `client ${ratio(c.full.clientUs, floorFull.clientUs)}; resumed node ${ratio(c.resumed.nodeUs, floorResumed.serverUs)}, ` +
    `client ${ratio(c.resumed.clientUs, floorResumed.clientUs)} (the floor parses nothing, checks no token and records nothing)`,
);
console.log(
  `TLS over plain, CPU per connect: full handshake +${(c.full.nodeUs - c.plain.nodeUs).toFixed(0)} us node, ` +
    `+${(c.full.clientUs - c.plain.clientUs).toFixed(0)} us client; resumed +${(c.resumed.nodeUs - c.plain.nodeUs).toFixed(0)} us node, ` +
    `+${(c.resumed.clientUs - c.plain.clientUs).toFixed(0)} us client`,
);
try {
  const algorithm = keyType === 'rsa-2048' ? 'rsa2048' : 'ecdsap256';
  const out = execFileSync('openssl', ['speed', '-seconds', '2', algorithm], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const m =
    /(?:256 bits ecdsa \(nistp256\)|rsa 2048 bits)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(
      out,
    );
  if (m) {
    // The per-operation columns round to 0.0000s; the rates do not.
    const us = (perSecond: string) => (1e6 / Number(perSecond)).toFixed(1);
    console.log(
      `openssl speed ${algorithm} on this box: sign ${us(m[1]!)} us, verify ${us(m[2]!)} us ` +
        '(a full handshake signs once at the server and verifies at the client, plus an ECDHE at each end)',
    );
  }
} catch {
  console.log('openssl speed: not available');
}
