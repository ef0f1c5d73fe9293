/**
 * The Azure store's reader for worker threads (`ObjectStore.workerReader`): a restore's decoding
 * workers fetch their own chunks with it, one plain signed GET each (azure-rest.ts), into buffers they
 * reuse. Loaded inside the worker from the spec's module URL; all it needs arrives in `options`,
 * structured-cloned, so a token credential travels as the token it issued (a request that outlives it
 * fails, and the restore falls back to the store's own download).
 */
import { azureRest } from './azure-rest.ts';
import { blobUrl, type Authorization, type AzureTarget } from './azure-target.ts';
import { Watchdog } from './watchdog.ts';
import type { WorkerReader } from './store.ts';

/** What crosses to the worker: the target with a cloneable authorization, the store's prefix and stall timeout. */
export interface AzureWorkerReaderOptions {
  target: Omit<AzureTarget, 'authorization'> & { authorization: WorkerAuthorization };
  prefix: string;
  timeoutMs: number;
}

export type WorkerAuthorization = Exclude<Authorization, { kind: 'token' }> | { kind: 'bearer'; token: string; expiresOnTimestamp: number };

/** The main thread's side: the target's authorization as a worker can carry it (a token credential's current token). */
export function workerAuthorization(authorization: Authorization, token: { token: string; expiresOnTimestamp: number } | null): WorkerAuthorization | undefined {
  if (authorization.kind !== 'token') return authorization;
  return token ? { kind: 'bearer', token: token.token, expiresOnTimestamp: token.expiresOnTimestamp } : undefined;
}

export function openWorkerReader(options: AzureWorkerReaderOptions): WorkerReader {
  const { target, prefix, timeoutMs } = options;
  const given = target.authorization;
  const authorization: Authorization =
    given.kind === 'bearer'
      ? { kind: 'token', credential: { getToken: async () => ({ token: given.token, expiresOnTimestamp: given.expiresOnTimestamp }) } }
      : given.kind === 'sharedKey'
        ? { ...given, accountKey: Buffer.from(given.accountKey) } // cloned as a Uint8Array
        : given;
  // The main thread offers a reader only where its own requests are plain (no proxy): no env here.
  const rest = azureRest(authorization, {})!;
  const full: AzureTarget = { ...target, authorization };
  return {
    async read(key, buffer, signal) {
      const dog = new Watchdog(timeoutMs);
      const abort = () => dog.cancel();
      signal.addEventListener('abort', abort, { once: true });
      try {
        if (signal.aborted) throw signal.reason;
        const url = blobUrl(full, prefix ? `${prefix}/${key}` : key);
        const { body } = await rest.send({ method: 'GET', url, expect: [200], signal: dog.signal, onProgress: () => dog.touch(), bodyBuffer: buffer });
        return body;
      } finally {
        signal.removeEventListener('abort', abort);
        dog.dispose();
      }
    },
  };
}
