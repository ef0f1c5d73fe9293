/**
 * Store access with retry, in one place: `retrying(store, policy, log)` applies the retry policy
 * (transient `SyncError`s only, exponential backoff with jitter, see `withRetry`) to every object
 * operation of a store, once, logging each retry. It is applied where a store enters the library
 * (`drizzle()`, the CLI's context, `verifyLatest`, `rebuildManifest`); the code behind it calls the
 * store plainly.
 *
 * What a retry can and cannot do per operation:
 * - `writeSmall` is retried like any other call. A conditional write whose first attempt landed but
 *   whose response was lost comes back as `CONFLICT` on the retry; the retry cannot tell, so the
 *   caller resolves it (the snapshotter and `publishRebuiltManifest` recognize their own manifest).
 * - `download` is a stream: it is retried only until its first chunk arrives. A failure after bytes
 *   were handed on cannot be retried here (the consumer already used them); an operation that
 *   decodes a whole stream restarts as a whole with `retryWhole` (restores, verification).
 * - Lease calls (`Leaser`) pass through unretried: `WriterLease` decides what a failed renewal means.
 */
import { SyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import { withRetry, type RetryPolicy } from '../sync/retry.ts';
import type { Leaser, ObjectStore, SnapshotStore } from './store.ts';

/** Marks a retrying store (a symbol property, so it survives a Proxy or a spread over the store) with its policy. */
const RETRYING = Symbol('drizzle-libsql-blob.retrying');

interface Retrying {
  policy: RetryPolicy;
  log: SyncLogger;
}

/** Transient failures the retrying store gave up on after its retries: not to be retried again by `retryWhole`. */
const exhausted = new WeakSet<object>();

function retryingOf(store: ObjectStore): Retrying | undefined {
  return (store as unknown as Record<symbol, Retrying | undefined>)[RETRYING];
}

function attempt<T>(what: string, fn: () => Promise<T>, policy: RetryPolicy, warn: (message: string) => void): Promise<T> {
  return withRetry(what, fn, policy, warn).catch((error: unknown) => {
    if (error instanceof SyncError && error.transient) exhausted.add(error);
    throw error;
  });
}

/**
 * The store with `policy` applied to every object operation (lease calls pass through). A store that
 * is already retrying is returned as it is: the policy is applied once, the first one wins.
 */
export function retrying(store: SnapshotStore, policy: RetryPolicy, log: SyncLogger): SnapshotStore;
export function retrying(store: ObjectStore, policy: RetryPolicy, log: SyncLogger): ObjectStore;
export function retrying(store: ObjectStore & Partial<Leaser>, policy: RetryPolicy, log: SyncLogger): ObjectStore & Partial<Leaser> {
  if (retryingOf(store)) return store;
  const run = <T>(what: string, key: string | undefined, fn: () => Promise<T>) =>
    attempt(what, fn, policy, (message) => log.warn(key === undefined ? { store: store.location } : { store: store.location, key }, message));

  async function* download(key: string): AsyncIterable<Buffer> {
    let iterator: AsyncIterator<Buffer> | undefined;
    // Retried until the first chunk arrives; a failure later propagates (see the module comment).
    const first = await run(`download ${key}`, key, async () => {
      iterator = store.download(key)[Symbol.asyncIterator]();
      return iterator.next();
    });
    try {
      for (let next = first; !next.done; next = await iterator!.next()) yield next.value;
    } finally {
      await iterator!.return?.();
    }
  }

  const leases: Partial<Leaser> = {};
  if (store.acquireLease) leases.acquireLease = store.acquireLease.bind(store);
  if (store.renewLease) leases.renewLease = store.renewLease.bind(store);
  if (store.releaseLease) leases.releaseLease = store.releaseLease.bind(store);

  const wrapped: ObjectStore & Partial<Leaser> & Record<symbol, Retrying> = {
    [RETRYING]: { policy, log },
    location: store.location,
    ...(store.timeResolutionMs === undefined ? {} : { timeResolutionMs: store.timeResolutionMs }),
    probe: () => run('probe', undefined, () => store.probe()),
    ...(store.prepare ? { prepare: () => store.prepare!() } : {}),
    readSmall: (key) => run(`read ${key}`, key, () => store.readSmall(key)),
    writeSmall: (key, body, condition) => run(`write ${key}`, key, () => store.writeSmall(key, body, condition)),
    uploadBuffer: (key, body) => run(`upload ${key}`, key, () => store.uploadBuffer(key, body)),
    uploadFile: (key, filePath, metadata, options) => run(`upload ${key}`, key, () => store.uploadFile(key, filePath, metadata, options)),
    download,
    downloadToFile: (key, filePath) => run(`download ${key}`, key, () => store.downloadToFile(key, filePath)),
    delete: (key, condition) => run(`delete ${key}`, key, () => store.delete(key, condition)),
    list: (prefix) => run(`list ${prefix}`, undefined, () => store.list(prefix)),
    ...leases,
  };
  return wrapped;
}

/**
 * Retries, as a whole, an operation that consumes a `download` stream and cannot resume it (the
 * bytes went into a decoder or a worker): a restore or a verification. The one retry outside the
 * retrying store, because a stream cannot be retried once its first chunk was handed on. Uses the
 * retrying store's own policy; a failure the store already retried is not retried again, so only a
 * stream that broke mid-way restarts. On a store that is not retrying, runs once.
 */
export function retryWhole<T>(store: ObjectStore, what: string, fn: () => Promise<T>): Promise<T> {
  const retry = retryingOf(store);
  if (!retry) return fn();
  return withRetry(what, fn, retry.policy, (message) => retry.log.warn({ store: store.location }, message), (error) => !exhausted.has(error as object));
}
