import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  BrokerUnavailableError,
  isErrorCode,
  isPushbenchError,
  NodeUnreachableError,
  PushbenchError,
  RegistryUnavailableError,
  WsNotOpenError,
} from '../../core/errors.js';
import { ExitCode } from '../../core/exit-codes.js';
import { startWorkerBeside } from '../../core/runtime.js';
import { WsProtocolError } from '../../core/ws/parser.js';

/** The error a worker thread's uncaught throw of `kind` hands to the Worker's 'error' event. */
async function thrownInWorker(kind: 'limit' | 'broker' | 'plain'): Promise<unknown> {
  const worker = startWorkerBeside(import.meta.url, './fixtures/throw-in-worker', { kind });
  const [err] = await once(worker, 'error');
  return err;
}

describe('the error family', () => {
  it('brings every runtime condition under PushbenchError with its stable code', () => {
    const cases = [
      [new BrokerUnavailableError('b'), 'BrokerUnavailableError', 'PB_BROKER_UNAVAILABLE'],
      [new RegistryUnavailableError('r'), 'RegistryUnavailableError', 'PB_REGISTRY_UNAVAILABLE'],
      [new NodeUnreachableError('n2', 500), 'NodeUnreachableError', 'PB_NODE_UNREACHABLE'],
      [new WsNotOpenError(3), 'WsNotOpenError', 'WS_ERR_NOT_OPEN'],
    ] as const;
    for (const [err, name, code] of cases) {
      expect(err).toBeInstanceOf(PushbenchError);
      expect(err.name).toBe(name);
      expect(err.code).toBe(code);
      expect(isErrorCode(err.code)).toBe(true);
      // Answered where they happen (503, a send callback): one that ends a command escaped.
      expect(err.exitCode).toBe(ExitCode.Internal);
    }
    expect(new NodeUnreachableError('n2', 500).message).toBe('node n2 did not answer within 500ms');
  });

  it('keeps the cause it was given', () => {
    const cause = new Error('ECONNREFUSED');
    expect(new RegistryUnavailableError('down', { cause }).cause).toBe(cause);
  });

  it('maps usage codes to the usage exit code', () => {
    expect(new PushbenchError('PB_BAD_GATE', 'x').exitCode).toBe(ExitCode.Usage);
    expect(new PushbenchError('PB_WORKER_FAILED', 'x').exitCode).toBe(ExitCode.Internal);
  });
});

describe('isPushbenchError', () => {
  it('recognises an instance of the family', () => {
    expect(isPushbenchError(new PushbenchError('PB_USAGE', 'x'))).toBe(true);
    expect(isPushbenchError(new NodeUnreachableError('n', 1))).toBe(true);
  });

  it('recognises an error thrown in a worker thread by its code, though the prototype is lost', async () => {
    const [limit, broker, plain] = await Promise.all([
      thrownInWorker('limit'),
      thrownInWorker('broker'),
      thrownInWorker('plain'),
    ]);
    // The clone is a plain Error: instanceof alone would miss it.
    expect(limit).not.toBeInstanceOf(PushbenchError);
    expect(isPushbenchError(limit)).toBe(true);
    expect(limit).toMatchObject({ code: 'PB_LIMIT', message: 'too many devices' });

    expect(broker).not.toBeInstanceOf(BrokerUnavailableError);
    expect(isPushbenchError(broker)).toBe(true);
    expect(broker).toMatchObject({ code: 'PB_BROKER_UNAVAILABLE', name: 'BrokerUnavailableError' });

    // Another error with a code from the same worker is not one of ours.
    expect(isPushbenchError(plain)).toBe(false);
  });

  it('does not recognise a structured clone, which drops the code (so send {code, message})', () => {
    const clone: unknown = structuredClone(new PushbenchError('PB_LIMIT', 'x'));
    expect(clone).toBeInstanceOf(Error);
    expect(isPushbenchError(clone)).toBe(false);
  });

  it('rejects codes outside the table and values that are not errors', () => {
    expect(isPushbenchError(Object.assign(new Error('x'), { code: 'PB_NO_SUCH_CODE' }))).toBe(
      false,
    );
    expect(isPushbenchError(new WsProtocolError('WS_ERR_INVALID_UTF8', 1007, 'bad'))).toBe(false);
    expect(isPushbenchError({ code: 'PB_USAGE', message: 'not an Error' })).toBe(false);
    expect(isPushbenchError(null)).toBe(false);
    expect(isPushbenchError('PB_USAGE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
  });
});
