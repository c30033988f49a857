import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { PushbenchError, RegistryUnavailableError } from '../../core/errors.js';
import { createBroker, createRegistry } from '../../server/backends.js';
import { createBackends } from '../../server/node.js';
import { redactUrl } from '../../server/redis-url.js';

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('redactUrl', () => {
  it('replaces the password and leaves a URL without one as it is', () => {
    expect(redactUrl('redis://:hunter2@127.0.0.1:6379')).toBe('redis://:***@127.0.0.1:6379');
    expect(redactUrl('rediss://app:hunter2@cache:6380/2')).toBe('rediss://app:***@cache:6380/2');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('hides the user info of a URL that does not parse', () => {
    expect(redactUrl('redis://:hunter2@[::1:6379')).toBe('redis://***@[::1:6379');
    expect(redactUrl('redis://app:hunter2@bad host:1')).toBe('redis://***@bad host:1');
  });
});

describe('the backends factory', () => {
  it('hides the password of a URL it refuses, for the registry as for the broker', async () => {
    const url = 'http://app:hunter2@127.0.0.1:6379';
    for (const open of [createRegistry, createBroker]) {
      const err = await open(url).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PushbenchError);
      expect((err as PushbenchError).code).toBe('PB_USAGE');
      expect((err as Error).message).toContain("got 'http://app:***@127.0.0.1:6379/'");
      expect((err as Error).message).not.toContain('hunter2');
    }
  });

  it('hides the password of a Redis it cannot reach', async () => {
    const port = await closedPort();
    const err = await createRegistry(`redis://:hunter2@127.0.0.1:${port}`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryUnavailableError);
    expect((err as Error).message).toBe(
      `cannot reach Redis at redis://:***@127.0.0.1:${port}: ECONNREFUSED`,
    );
  });
});

describe('createBackends', () => {
  it('ends serve with PB_BACKEND_UNREACHABLE when Redis does not answer, PB_USAGE for a bad URL', async () => {
    const port = await closedPort();
    const down = await createBackends({ redisUrl: `redis://127.0.0.1:${port}` }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // The registry's own error is a PushbenchError too; serve still reports the backend as such.
    expect(down).not.toBeInstanceOf(RegistryUnavailableError);
    expect(down).toMatchObject({ code: 'PB_BACKEND_UNREACHABLE' });
    expect((down as Error).message).toBe(
      `cannot reach Redis at redis://127.0.0.1:${port}: ECONNREFUSED`,
    );
    await expect(createBackends({ redisUrl: 'http://127.0.0.1:6379' })).rejects.toMatchObject({
      code: 'PB_USAGE',
    });
  });
});
