/**
 * The factory of the shared backends: the one module that knows both backends of
 * the registry and of the broker, in memory (one process; the default) and in
 * Redis (many nodes). The interfaces and the checks the backends share are in
 * registry.ts and broker.ts; the backends import those, never this file. Each
 * backend is loaded on demand, so a memory-only node never loads ioredis.
 */
import { PushbenchError } from '../core/errors.js';
import type { Broker, BrokerOptions } from './broker.js';
import { isRedisUrl, redactUrl } from './redis-url.js';
import type { PushRegistry, RegistryOptions } from './registry.js';

/**
 * Opens the registry a node is configured for: in-memory when `url` is
 * undefined, Redis for `redis://` or `rediss://` URLs (it connects and PINGs
 * before resolving). Rejects with `PB_USAGE` for another scheme and with
 * `RegistryUnavailableError` ("cannot reach Redis at URL: ECONNREFUSED") when
 * Redis does not answer. Messages show the URL without its password.
 */
export async function createRegistry(
  url?: string,
  options: RegistryOptions = {},
): Promise<PushRegistry> {
  if (url === undefined) {
    const { MemoryRegistry } = await import('./registry-memory.js');
    return new MemoryRegistry(options.nowMs ? { nowMs: options.nowMs } : {});
  }
  if (!isRedisUrl(url)) {
    throw new PushbenchError(
      'PB_USAGE',
      `--redis must be a redis:// or rediss:// URL, got '${redactUrl(url)}'; e.g. --redis redis://127.0.0.1:6379`,
    );
  }
  const { RedisRegistry } = await import('./registry-redis.js');
  return RedisRegistry.connect({
    url,
    ...(options.keyPrefix !== undefined && { keyPrefix: options.keyPrefix }),
    ...(options.commandTimeoutMs !== undefined && { commandTimeoutMs: options.commandTimeoutMs }),
    ...(options.connectTimeoutMs !== undefined && { connectTimeoutMs: options.connectTimeoutMs }),
  });
}

/**
 * Opens the broker a node is configured for: in-memory (one process) when `url`
 * is undefined, Redis for `redis://` or `rediss://` URLs (it connects, PINGs and
 * checks the server version before resolving). Rejects with `PB_USAGE` for
 * another scheme and with `BrokerUnavailableError` ("cannot reach Redis at URL:
 * ECONNREFUSED") when Redis does not answer. Messages show the URL without its
 * password.
 */
export async function createBroker(url?: string, options: BrokerOptions = {}): Promise<Broker> {
  if (url === undefined) {
    const { MemoryBroker } = await import('./broker-memory.js');
    return new MemoryBroker(options);
  }
  if (!isRedisUrl(url)) {
    throw new PushbenchError(
      'PB_USAGE',
      `the broker URL must be redis:// or rediss://, got '${redactUrl(url)}'; e.g. redis://127.0.0.1:6379`,
    );
  }
  const { RedisBroker } = await import('./broker-redis.js');
  return RedisBroker.connect({ ...options, url });
}
