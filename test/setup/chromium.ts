import { access, constants } from 'node:fs/promises';
import { execa } from 'execa';

/** Where Debian's chromium package puts the browser. */
export const chromiumPath = '/usr/bin/chromium';

/** Installing a browser downloads ~100 MB of packages; allow for a slow mirror. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The path of a headless-capable Chromium, installing Debian's `chromium`
 * package with apt-get when it is missing (tests run as root). Playwright's own
 * browser download cannot reach its CDN here, so the system package is used.
 * Throws with apt-get's last output when the install fails.
 */
export async function ensureChromium(): Promise<string> {
  if (await isExecutable(chromiumPath)) return chromiumPath;
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await execa('apt-get', ['update'], { env, timeout: INSTALL_TIMEOUT_MS, all: true });
    await execa('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], {
      env,
      timeout: INSTALL_TIMEOUT_MS,
      all: true,
    });
  } catch (err) {
    const output = (err as { all?: string }).all ?? '';
    throw new Error(
      `Chromium is not at ${chromiumPath} and \`apt-get install chromium\` failed ` +
        `(${(err as Error).message.split('\n')[0]}); install it by hand and rerun.\n` +
        output.split('\n').slice(-20).join('\n'),
    );
  }
  if (!(await isExecutable(chromiumPath))) {
    throw new Error(`apt-get installed chromium but ${chromiumPath} is still missing`);
  }
  return chromiumPath;
}
