import { access, constants } from 'node:fs/promises';
import { aptInstall } from './debian.js';

/** Where Debian's chromium package puts the browser. */
export const chromiumPath = '/usr/bin/chromium';

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
  await aptInstall('chromium', `Chromium is not at ${chromiumPath}`);
  if (!(await isExecutable(chromiumPath))) {
    throw new Error(`apt-get installed chromium but ${chromiumPath} is still missing`);
  }
  return chromiumPath;
}
