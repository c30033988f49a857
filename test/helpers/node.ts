import { type BackendChoice, type NodeOptions, startNode } from '../../server/node.js';

/** The secret and API key of every in-process test node. */
export const TEST_SECRET = 'test-secret';
export const TEST_API_KEY = 'test-key';

/** An in-process reference node for a test, with slow heartbeats unless told otherwise. */
export async function startTestNode(options: Partial<NodeOptions> & BackendChoice = {}) {
  const started = await startNode({
    secret: TEST_SECRET,
    apiKey: TEST_API_KEY,
    heartbeatIntervalMs: 60_000,
    heartbeatTimeoutMs: 120_000,
    ...options,
  });
  return {
    ...started,
    /** Stops the node and closes its registry and broker. */
    async stop(): Promise<void> {
      await started.node.stop();
      await started.backends.registry.close();
      await started.backends.broker.close();
    },
  };
}
