/**
 * Installs the peer tools the comparison measures, once: Artillery into
 * `bench/.peers` (npm, `--ignore-scripts` because a bundled Playwright would
 * download a browser) and Tsung from Debian's packages when `tsung` is not on
 * PATH. A failed install is never fatal: the tool comes back as skipped with a
 * one-line reason, and the comparison prints that reason in its row.
 *
 *   node --import tsx bench/peers/install.ts
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Artillery's exact version: `artillery@2` resolved to this when the comparison was written. */
export const ARTILLERY_VERSION = '2.0.21';

/** Where Artillery is installed: `bench/.peers` (git-ignored). */
export const PEERS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '.peers');

/** A peer that is ready to run, or why it is not. */
export type PeerInstall =
  | { ok: true; version: string; bin: string }
  | { ok: false; reason: string };

/** The first line of an error's message (an exec failure carries stderr). */
function firstLine(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  const text = (e.stderr?.trim() || e.message || String(err)).split('\n');
  return (text.find((l) => /err/i.test(l)) ?? text[0] ?? '').trim().slice(0, 160);
}

/** Installs Artillery {@link ARTILLERY_VERSION} into {@link PEERS_DIR} unless that version is already there. */
export async function installArtillery(): Promise<PeerInstall> {
  const pkg = join(PEERS_DIR, 'node_modules', 'artillery', 'package.json');
  const bin = join(PEERS_DIR, 'node_modules', '.bin', 'artillery');
  const installed = (): string | undefined =>
    existsSync(pkg)
      ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version
      : undefined;
  if (installed() !== ARTILLERY_VERSION) {
    try {
      await run(
        'npm',
        [
          'install',
          '--prefix',
          PEERS_DIR,
          '--no-save',
          '--ignore-scripts',
          '--no-audit',
          '--no-fund',
          `artillery@${ARTILLERY_VERSION}`,
        ],
        { timeout: 600_000, maxBuffer: 16 << 20 },
      );
    } catch (err) {
      return { ok: false, reason: `npm install artillery failed: ${firstLine(err)}` };
    }
  }
  const version = installed();
  if (version === undefined || !existsSync(bin)) {
    return { ok: false, reason: `artillery not found in ${PEERS_DIR} after npm install` };
  }
  return { ok: true, version, bin };
}

/** Path of an executable on PATH, or undefined. */
async function which(name: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('sh', ['-c', `command -v ${name}`]);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Installs Tsung with apt-get when `tsung` is not on PATH; reads its Debian package version. */
export async function installTsung(): Promise<PeerInstall> {
  let bin = await which('tsung');
  if (bin === undefined) {
    try {
      await run('apt-get', ['install', '-y', '-qq', 'tsung'], {
        timeout: 600_000,
        maxBuffer: 16 << 20,
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch (err) {
      return { ok: false, reason: `apt-get install tsung failed: ${firstLine(err)}` };
    }
    bin = await which('tsung');
    if (bin === undefined) return { ok: false, reason: 'tsung not on PATH after apt-get install' };
  }
  let version = 'unknown';
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax.
    const { stdout } = await run('dpkg-query', ['-W', '-f', '${Version}', 'tsung']);
    version = stdout.trim() || version;
  } catch {
    // Not from a Debian package (built from source): keep "unknown".
  }
  return { ok: true, version, bin };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const [name, install] of [
    ['artillery', installArtillery],
    ['tsung', installTsung],
  ] as const) {
    const r = await install();
    console.log(r.ok ? `${name} ${r.version} (${r.bin})` : `${name}: skipped, ${r.reason}`);
  }
}
