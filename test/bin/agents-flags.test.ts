/**
 * Bad flags of `run --agents` and `pushbench agent`: one line each, exit 2,
 * before anything listens or dials.
 */
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const BIN = ['--import', 'tsx', 'bin/pushbench.ts'];

function cli(args: string[]) {
  return execa(process.execPath, [...BIN, ...args], { reject: false, env: { NO_COLOR: '1' } });
}

describe('flags of load agents on other hosts', () => {
  it('refuses each bad one with one line and exit 2', async () => {
    for (const [args, message] of [
      [['run', 'smoke', '--agents', '2'], /--agents needs --listen HOST:PORT/],
      [['run', 'smoke', '--agents', '2', '--listen', 'nowhere'], /--listen must be HOST:PORT/],
      [['run', 'smoke', '--agents', '2', '--listen', '0.0.0.0:7400'], /not a wildcard/],
      [['run', 'smoke', '--listen', '127.0.0.1:7400'], /--listen only goes with --agents N/],
      [
        ['run', 'smoke', '--agents', '2', '--listen', '127.0.0.1:7400', '--repeat', '2'],
        /--agents runs one run/,
      ],
      [
        ['run', 'smoke', '--agents', '2', '--listen', '127.0.0.1:7400', '--agent-token', 'short'],
        /--agent-token must be at least 8 characters/,
      ],
      [
        ['agent', '--join', 'http://h:1', '--token', 't'],
        /--join must be a ws:\/\/ or wss:\/\/ URL/,
      ],
      [['agent', '--join', 'ws://h:1', '--token', 't', '--name', '-x'], /--name must be 1-64/],
      [['agent', '--join', 'ws://h:1'], /--token/],
    ] as const) {
      const r = await cli([...args]);
      expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  }, 60_000);
});
