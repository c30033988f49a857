/**
 * A run's throwaway TLS material: made by openssl, private files 0600 in a
 * folder of the run's own, removed with it; folders of dead runs swept, but
 * only this user's and only once a minute old.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeRunTls, RUN_TLS_SERVERNAME, sweepDeadRunTls } from '../../core/tls-certs.js';

/** A pid no process has: one that just exited. */
function deadPid(): number {
  return Number(execFileSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim());
}

describe("a run's TLS material", () => {
  it('is a CA, a certificate for the run name signed by it, and private files only its owner reads; remove() takes it all', async () => {
    const tls = await makeRunTls();
    try {
      expect(tls.dir.startsWith(join(tmpdir(), `pushbench-tls-${process.pid}-`))).toBe(true);
      for (const file of [
        join(tls.dir, 'ca.key'),
        tls.server.keyFile,
        tls.ticketKeysFile,
        tls.combinedPemFile,
        tls.haproxyTicketKeysFile,
      ]) {
        expect(statSync(file).mode & 0o777, file).toBe(0o600);
      }
      expect(statSync(tls.ticketKeysFile).size).toBe(48);
      const verify = execFileSync(
        'openssl',
        ['verify', '-CAfile', join(tls.dir, 'ca.pem'), tls.server.certFile],
        {
          encoding: 'utf8',
        },
      );
      expect(verify).toMatch(/: OK/);
      const san = execFileSync(
        'openssl',
        ['x509', '-in', tls.server.certFile, '-noout', '-ext', 'subjectAltName'],
        {
          encoding: 'utf8',
        },
      );
      expect(san).toContain(`DNS:${RUN_TLS_SERVERNAME}`);
    } finally {
      tls.remove();
    }
    expect(existsSync(tls.dir)).toBe(false);
  });

  it("sweeps a dead run's folder once it is a minute old, and leaves a young one", () => {
    const pid = deadPid();
    const old = join(tmpdir(), `pushbench-tls-${pid}-old`);
    const young = join(tmpdir(), `pushbench-tls-${pid}-young`);
    mkdirSync(old, { recursive: true });
    mkdirSync(young, { recursive: true });
    const past = (Date.now() - 120_000) / 1000;
    utimesSync(old, past, past);
    try {
      sweepDeadRunTls();
      expect(existsSync(old)).toBe(false);
      expect(existsSync(young)).toBe(true);
    } finally {
      execFileSync('rm', ['-rf', old, young]);
    }
  });
});
