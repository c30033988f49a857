import { execFileSync } from 'node:child_process';
import { execa } from 'execa';

/** Installing from Debian's mirror can be slow (a browser is ~100 MB of packages). */
const INSTALL_TIMEOUT_MS = 10 * 60_000;

function has(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Installs Debian's `pkg` with apt-get (tests run as root here, as CI does).
 * Throws with `why`, apt-get's first error line and its last output when it fails.
 */
export async function aptInstall(pkg: string, why: string): Promise<void> {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await execa('apt-get', ['update'], { env, timeout: INSTALL_TIMEOUT_MS, all: true });
    await execa('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
      env,
      timeout: INSTALL_TIMEOUT_MS,
      all: true,
    });
  } catch (err) {
    const output = (err as { all?: string }).all ?? '';
    throw new Error(
      `${why} and \`apt-get install ${pkg}\` failed ` +
        `(${(err as Error).message.split('\n')[0]}); install it by hand and rerun.\n` +
        output.split('\n').slice(-20).join('\n'),
    );
  }
}

/** Makes sure `command` exists, installing Debian's `pkg` when it is missing. */
export async function ensureCommand(command: string, pkg: string): Promise<void> {
  if (has(command)) return;
  await aptInstall(pkg, `\`${command}\` is missing`);
  if (!has(command))
    throw new Error(`apt-get installed ${pkg} but \`${command}\` is still missing`);
}
