/**
 * The kernel engine's tools: `ip` (iproute2) and `nft` (nftables), run as
 * child processes, and the check that says, in one line, what this machine
 * lacks for the engine (root, the tools, network namespaces) and how to get it.
 */
import { execFileSync } from 'node:child_process';
import { execa } from 'execa';
import { PushbenchError } from '../../core/errors.js';

/** Runs `ip args…`; rejects with the command and its first stderr line. */
export async function ip(args: string[]): Promise<string> {
  return run('ip', args);
}

/** Runs `nft` inside a network namespace, the ruleset given on stdin (`nft -f -`). */
export async function nftIn(namespace: string, ruleset: string): Promise<string> {
  return run('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], ruleset);
}

/** Runs a command inside a network namespace (`ip netns exec`). */
export async function execIn(namespace: string, command: string, args: string[]): Promise<string> {
  return run('ip', ['netns', 'exec', namespace, command, ...args]);
}

async function run(command: string, args: string[], input?: string): Promise<string> {
  try {
    const r = await execa(command, args, {
      ...(input !== undefined && { input }),
      timeout: 30_000,
    });
    return r.stdout;
  } catch (err) {
    const e = err as { stderr?: string; shortMessage?: string; message: string };
    const line = (e.stderr ?? '').trim().split('\n')[0] || e.shortMessage || e.message;
    throw new Error(`${command} ${args.join(' ')}: ${line}`);
  }
}

/** The synchronous `ip` for exit handlers, where nothing asynchronous runs any more. */
export function ipSync(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // Best effort: whatever is left, the next start's sweep removes.
  }
}

function hasCommand(command: string): boolean {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * What this machine lacks for the kernel engine, each with how to get it; empty
 * when it has everything. Checks root (CAP_NET_ADMIN is needed for namespaces,
 * links and rules), `ip` and `nft`.
 */
export function kernelEngineMissing(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (CAP_NET_ADMIN): run as root');
  if (!hasCommand('ip')) missing.push('`ip`: apt-get install iproute2');
  if (!hasCommand('nft')) missing.push('`nft`: apt-get install nftables');
  return missing;
}

/** Throws PB_USAGE naming everything missing for the kernel engine, in one line. */
export function requireKernelEngine(): void {
  const missing = kernelEngineMissing();
  if (missing.length === 0) return;
  throw new PushbenchError(
    'PB_USAGE',
    `the kernel network engine needs ${missing.join('; ')} (or use topology.network "userland")`,
  );
}
