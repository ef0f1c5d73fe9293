import pRetry from 'p-retry';
import { SyncError, errorMessage } from '../errors.ts';

export interface RetryPolicy {
  /** Attempts after the first one. The Azure SDK also retries each request a few times underneath. */
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 3, minTimeoutMs: 250, maxTimeoutMs: 4_000 };

/**
 * Retries transient store failures with exponential backoff and jitter. Conflicts, auth failures and
 * corrupt data are not transient and fail at once: retrying them only delays the truth.
 */
export function withRetry<T>(
  what: string,
  fn: () => Promise<T>,
  policy: RetryPolicy,
  onRetry?: (message: string) => void,
): Promise<T> {
  return pRetry(fn, {
    retries: policy.retries,
    minTimeout: policy.minTimeoutMs,
    maxTimeout: policy.maxTimeoutMs,
    randomize: true,
    shouldRetry: ({ error }) => error instanceof SyncError && error.transient,
    onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
      if (retriesLeft > 0 && error instanceof SyncError && error.transient) {
        onRetry?.(`${what} failed (attempt ${attemptNumber}, ${retriesLeft} left): ${errorMessage(error)}`);
      }
    },
  });
}
