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
 * corrupt data are not transient and fail at once: retrying them only delays the truth. Store calls
 * get it through `retrying()` (src/store/retrying-store.ts), not by calling this directly.
 * `alsoRetryable(error)` false: not retried although transient (a failure already retried underneath).
 */
export function withRetry<T>(
  what: string,
  fn: () => Promise<T>,
  policy: RetryPolicy,
  onRetry?: (message: string) => void,
  alsoRetryable: (error: unknown) => boolean = () => true,
): Promise<T> {
  const retryable = (error: unknown) => error instanceof SyncError && error.transient && alsoRetryable(error);
  return pRetry(fn, {
    retries: policy.retries,
    minTimeout: policy.minTimeoutMs,
    maxTimeout: policy.maxTimeoutMs,
    randomize: true,
    shouldRetry: ({ error }) => retryable(error),
    onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
      if (retriesLeft > 0 && retryable(error)) {
        onRetry?.(`${what} failed (attempt ${attemptNumber}, ${retriesLeft} left): ${errorMessage(error)}`);
      }
    },
  });
}
