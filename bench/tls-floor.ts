/**
 * What Node itself allows for a TLS connect, to set pushbench's figures
 * against: a raw `tls.createServer` answering every request with a fixed 101
 * (its own process), and raw `tls.connect` clients from this process sending a
 * fixed upgrade request, with the same certificate, trust store (one
 * `SecureContext`), SNI and TLS 1.3 as the run's. Nothing of the project's hot
 * path runs here. Two rounds: full handshakes, then the same number resumed
 * with the tickets the first round kept. CPU per connect at each end, as in
 * capacity/handshakes.ts.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createSecureContext, type TLSSocket } from 'node:tls';
import { readProcessStats } from '../core/process-stats.js';
import type { RunTls } from '../core/tls-certs.js';

/** One floor round: per connect. */
export interface FloorRound {
  label: string;
  open: number;
  resumed: number;
  connectsPerSec: number;
  serverUs: number;
  clientUs: number;
}

const IN_FLIGHT = 1000;

// The server: a fixed 101 to the first bytes of each connection, nothing parsed.
const SERVER = `
const tls = require('node:tls');
const fs = require('node:fs');
const answer = Buffer.from('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\\r\\n\\r\\n');
const server = tls.createServer({ cert: fs.readFileSync(process.argv[1]), key: fs.readFileSync(process.argv[2]) }, (s) => {
  s.on('error', () => {});
  s.once('data', () => s.write(answer));
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

const REQUEST = Buffer.from(
  'GET /ws HTTP/1.1\r\nHost: push\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
);

/** Measures `devices` raw TLS connects, full then resumed, against a raw server. */
export async function measureTlsFloor(tls: RunTls, devices: number): Promise<FloorRound[]> {
  const server = spawn(process.execPath, ['-e', SERVER, tls.server.certFile, tls.server.keyFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const [first] = (await once(server.stdout!, 'data')) as [Buffer];
    const port = Number(first.toString().trim());
    const secureContext = createSecureContext(tls.caPem ? { ca: tls.caPem } : {});
    const sessions: (Buffer | undefined)[] = new Array(devices);
    const held: TLSSocket[] = [];

    const round = (resume: boolean) =>
      new Promise<number>((resolve, reject) => {
        let started = 0;
        let done = 0;
        let inFlight = 0;
        let resumed = 0;
        const next = () => {
          while (inFlight < IN_FLIGHT && started < devices) {
            const i = started++;
            inFlight++;
            const session = resume ? sessions[i] : undefined;
            const s = connect({
              host: '127.0.0.1',
              port,
              servername: tls.servername,
              secureContext,
              ...(session && { session }),
            });
            s.on('session', (b: Buffer) => {
              sessions[i] = b;
            });
            s.once('secureConnect', () => s.write(REQUEST));
            s.once('data', () => {
              if (s.isSessionReused()) resumed++;
              held.push(s);
              inFlight--;
              if (++done === devices) resolve(resumed);
              else next();
            });
            s.once('error', reject);
          }
        };
        next();
      });

    const out: FloorRound[] = [];
    for (const [label, resume] of [
      ['node:tls floor, full handshake', false],
      ['node:tls floor, resumed', true],
    ] as const) {
      const cpu0 = process.cpuUsage();
      const server0 = readProcessStats(server.pid!)?.cpuSeconds ?? 0;
      const t0 = performance.now();
      const resumed = await round(resume);
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      // A TLS 1.3 ticket arrives after the handshake: give the last ones time to land.
      await new Promise((r) => setTimeout(r, 300));
      const server1 = readProcessStats(server.pid!)?.cpuSeconds ?? 0;
      out.push({
        label,
        open: devices,
        resumed,
        connectsPerSec: devices / seconds,
        serverUs: ((server1 - server0) * 1e6) / devices,
        clientUs: (cpu.user + cpu.system) / devices,
      });
      for (const s of held.splice(0)) s.destroy();
      await new Promise((r) => setTimeout(r, 500));
    }
    return out;
  } finally {
    server.kill('SIGKILL');
  }
}
