/**
 * Throwaway certificates for a run or a test: a CA of its own and server
 * certificates it signs, made by the `openssl` command line (no network, no
 * npm dependency), EC P-256 keys. Everything is written into one folder the
 * caller owns (a run's results folder or a temp folder it removes), private
 * keys with mode 0600.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { PushbenchError } from './errors.js';

const run = promisify(execFile);

/** The server key types a run can make: EC P-256 (the default) or RSA 2048. */
export type TlsKeyType = 'ec-p256' | 'rsa-2048';
export const TLS_KEY_TYPES: readonly TlsKeyType[] = ['ec-p256', 'rsa-2048'];

/** openssl's `-newkey` arguments for a key type. */
function newKeyArgs(type: TlsKeyType): string[] {
  return type === 'rsa-2048'
    ? ['-newkey', 'rsa:2048']
    : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
}

/** A certificate and its key, as files and as PEM. */
export interface CertFiles {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/** What a server certificate is for. */
export interface ServerCertOptions {
  /** DNS names and IP addresses it is valid for (its subjectAltName). */
  names: string[];
  /** Valid from `notBefore` days from now (negative: in the past) for `days`; default 0 and 7. */
  notBeforeDays?: number;
  days?: number;
  /** Files are `<basename>.pem` and `<basename>.key`; default `server`. */
  basename?: string;
  /** Default EC P-256. */
  keyType?: TlsKeyType;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new PushbenchError(
        'PB_USAGE',
        'TLS needs the openssl command to make its certificates (Debian: apt-get install openssl)',
      );
    }
    const last = (e.stderr ?? e.message).trim().split('\n').pop();
    throw new PushbenchError('PB_INTERNAL', `openssl ${args[0]} failed: ${last}`);
  }
}

function files(dir: string, basename: string): CertFiles {
  const certFile = join(dir, `${basename}.pem`);
  const keyFile = join(dir, `${basename}.key`);
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/** `YYYYMMDDHHMMSSZ`, `days` from now, as `openssl ca` and `x509` take dates. */
function asn1Time(days: number): string {
  const d = new Date(Date.now() + days * 86_400_000);
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** A self-signed CA in `dir` (`ca.pem`, `ca.key`), valid for 30 days. */
export async function makeCa(dir: string, name = 'pushbench run CA'): Promise<CertFiles> {
  mkdirSync(dir, { recursive: true });
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '30',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  return files(dir, 'ca');
}

/**
 * A server certificate signed by `ca`, for `names` (each a DNS name or an IP
 * address), written beside the CA's files.
 */
export async function makeServerCert(
  dir: string,
  ca: CertFiles,
  options: ServerCertOptions,
): Promise<CertFiles> {
  if (options.names.length === 0) throw new TypeError('a server certificate needs a name');
  const basename = options.basename ?? 'server';
  // openssl's request, signing database and copies go here, and away at the end.
  const work = join(dir, `.${basename}-work`);
  mkdirSync(work, { recursive: true });
  const san = options.names.map((n) => (isIP(n) === 0 ? `DNS:${n}` : `IP:${n}`)).join(',');
  await openssl(
    [
      'req',
      ...newKeyArgs(options.keyType ?? 'ec-p256'),
      '-nodes',
      '-keyout',
      `${basename}.key`,
      '-out',
      join(work, 'request.csr'),
      '-subj',
      `/CN=${options.names[0]}`,
    ],
    dir,
  );
  // `x509 -req` takes no start date; a tiny `ca` setup does (an expired certificate
  // for the tests needs one in the past).
  const ext = join(work, 'extensions');
  writeFileSync(
    ext,
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
  );
  const db = join(work, 'index');
  writeFileSync(db, '');
  const serial = join(work, 'serial');
  writeFileSync(serial, `${randomBytes(8).toString('hex')}\n`);
  const conf = join(work, 'ca.cnf');
  writeFileSync(
    conf,
    [
      '[ca]',
      'default_ca = run',
      '[run]',
      `database = ${db}`,
      `serial = ${serial}`,
      `new_certs_dir = ${work}`,
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      'copy_extensions = none',
      '[any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  const from = options.notBeforeDays ?? 0;
  await openssl(
    [
      'ca',
      '-batch',
      '-config',
      conf,
      '-cert',
      ca.certFile,
      '-keyfile',
      ca.keyFile,
      '-in',
      join(work, 'request.csr'),
      '-out',
      `${basename}.pem`,
      '-notext',
      '-startdate',
      asn1Time(from),
      '-enddate',
      asn1Time(from + (options.days ?? 7)),
      '-extfile',
      ext,
    ],
    dir,
  );
  rmSync(work, { recursive: true, force: true });
  return files(dir, basename);
}

/** The name devices send as SNI and check the run's certificate against. */
export const RUN_TLS_SERVERNAME = 'push.pushbench.test';

/** A run's TLS material in a temp folder of its own, removed by {@link RunTls.remove}. */
export interface RunTls {
  dir: string;
  /** The CA devices trust (PEM); undefined: Node's bundled public CAs. */
  caPem: Buffer | undefined;
  server: CertFiles;
  /** 48 random bytes (mode 0600): the session-ticket keys nodes share when told to. */
  ticketKeysFile: string;
  /** The server certificate and its key in one PEM file (mode 0600), as HAProxy's `crt` takes them. */
  combinedPemFile: string;
  /** Three base64 lines of 48 bytes (mode 0600), as HAProxy's `tls-ticket-keys` takes them. */
  haproxyTicketKeysFile: string;
  servername: string;
  keyType: TlsKeyType;
  /** Removes the folder, keys and all. */
  remove(): void;
}

const RUN_TLS_PREFIX = 'pushbench-tls-';

/**
 * A certificate the user brings instead of the run's own: its chain and key
 * (PEM files, which stay where they are), the CA devices trust (default:
 * Node's bundled public CAs) and the name they ask for (SNI, checked against
 * the certificate).
 */
export interface GivenCertificate {
  certFile: string;
  keyFile: string;
  caFile?: string;
  servername: string;
}

/** A PEM (or any) file's bytes, or `PB_USAGE` naming the field or flag and the file. */
export function readPemFile(field: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new PushbenchError(
      'PB_USAGE',
      `${field} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

/** The given certificate and key, read and checked to belong together; one line naming what is wrong. */
function readGiven(given: GivenCertificate): CertFiles {
  const cert = readPemFile('topology.tlsCertificate.cert', given.certFile);
  const key = readPemFile('topology.tlsCertificate.key', given.keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new PushbenchError(
      'PB_USAGE',
      `topology.tlsCertificate: ${given.certFile} with ${given.keyFile}: ${(err as Error).message}`,
    );
  }
  return { certFile: given.certFile, keyFile: given.keyFile, cert, key };
}

/**
 * Makes a run's throwaway CA, a server certificate (EC P-256 or RSA 2048) for {@link RUN_TLS_SERVERNAME},
 * or takes the user's ({@link GivenCertificate}),
 * `localhost` and 127.0.0.1 (devices check the name they sent, wherever the
 * node is), and ticket keys, in `<tmp>/pushbench-tls-<pid>-…`. Folders of runs
 * whose process is gone (SIGKILLed) are removed first.
 */
export async function makeRunTls(
  keyType: TlsKeyType = 'ec-p256',
  given?: GivenCertificate,
): Promise<RunTls> {
  sweepDeadRunTls();
  const dir = mkdtempSync(join(tmpdir(), `${RUN_TLS_PREFIX}${process.pid}-`));
  try {
    let server: CertFiles;
    let caPem: Buffer | undefined;
    if (given) {
      server = readGiven(given);
      caPem =
        given.caFile === undefined
          ? undefined
          : readPemFile('topology.tlsCertificate.ca', given.caFile);
    } else {
      const ca = await makeCa(dir);
      server = await makeServerCert(dir, ca, {
        names: [RUN_TLS_SERVERNAME, 'localhost', '127.0.0.1'],
        keyType,
      });
      caPem = ca.cert;
    }
    const ticketKeysFile = join(dir, 'ticket-keys');
    writeFileSync(ticketKeysFile, randomBytes(48), { mode: 0o600 });
    const combinedPemFile = join(dir, 'server-with-key.pem');
    writeFileSync(combinedPemFile, Buffer.concat([server.cert, server.key]), { mode: 0o600 });
    const haproxyTicketKeysFile = join(dir, 'haproxy-ticket-keys');
    // HAProxy wants at least three keys: the one before, the one in use, the next.
    const lines = [0, 1, 2].map(() => randomBytes(48).toString('base64'));
    writeFileSync(haproxyTicketKeysFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    return {
      dir,
      caPem,
      server,
      ticketKeysFile,
      combinedPemFile,
      haproxyTicketKeysFile,
      servername: given?.servername ?? RUN_TLS_SERVERNAME,
      keyType,
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Removes the TLS folders of runs whose process no longer exists: only this
 * user's, and only those at least a minute old (a pid seen from another pid
 * namespace sharing /tmp may look dead while its run is starting). Nothing it
 * cannot remove stops a run.
 */
export function sweepDeadRunTls(): void {
  let names: string[];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = new RegExp(`^${RUN_TLS_PREFIX}(\\d+)-`).exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processExists(pid)) continue;
    const path = join(tmpdir(), name);
    try {
      const st = lstatSync(path);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      if (Date.now() - st.mtimeMs < SWEEP_MIN_AGE_MS) continue;
      rmSync(path, { recursive: true, force: true });
    } catch {
      // Someone else's, or gone: not ours to fail on.
    }
  }
}

const SWEEP_MIN_AGE_MS = 60_000;

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
