/**
 * How healthy the backup is, from the library's SyncStatus. The library guarantees a snapshot no
 * later than `maxIntervalMs` after the first unsnapshotted commit; twice that with commits still
 * pending means the store has been failing long enough that a restart would lose work.
 */
import type { SyncHandle, SyncStatus } from 'drizzle-libsql-blob';

export type HealthStatus = 'ok' | 'degraded' | 'unhealthy';

/**
 * Remembers when the oldest commit not yet in the store was made. SyncStatus has no such field, so
 * it is tracked from outside: the app reports its writes, a successful snapshot resets the clock.
 * Measuring from the first pending commit (not from the last snapshot) keeps a write after a long
 * idle period from looking overdue.
 */
export class PendingClock {
  readonly #sync: SyncHandle;
  readonly #now: () => number;
  #since: number | undefined;

  /** `startedAt`: process start, the time of anything migrations/seeds/a dirty file left pending. */
  constructor(sync: SyncHandle, now: () => number, startedAt = now()) {
    this.#sync = sync;
    this.#now = now;
    if (sync.status().pendingCommits > 0) this.#since = startedAt;
    sync.on('snapshot', this.#onSnapshot);
  }

  readonly #onSnapshot = (info: { durationMs: number }) => {
    // Commits made during the snapshot are still pending: they cannot be older than its start.
    this.#since = this.#sync.status().pendingCommits > 0 ? this.#now() - info.durationMs : undefined;
  };

  noteWrite(): void {
    this.#since ??= this.#now();
  }

  /** When the oldest pending commit was made; undefined when nothing is pending. */
  pendingSince(status: SyncStatus): number | undefined {
    if (status.pendingCommits === 0) {
      this.#since = undefined;
      return undefined;
    }
    // A write the app was not told about (none today): first seen now.
    this.#since ??= this.#now();
    return this.#since;
  }

  dispose(): void {
    this.#sync.off('snapshot', this.#onSnapshot);
  }
}

export interface SyncAssessment {
  status: HealthStatus;
  reasons: string[];
  pendingForMs: number | null;
}

export function assessSync(status: SyncStatus, pendingSince: number | undefined, now: number, maxIntervalMs: number): SyncAssessment {
  const reasons: string[] = [];
  const pendingForMs = pendingSince === undefined ? null : Math.max(0, now - pendingSince);
  let result: HealthStatus = 'ok';
  const check = status.restoredFrom?.check;
  if (check?.state === 'failed') {
    reasons.push(`the restored database failed its check (${status.lastError?.code ?? 'SNAPSHOT_CORRUPT'}): reads only, no writes, nothing uploaded; restore an older snapshot`);
  } else if (status.state === 'stopped') {
    reasons.push(`snapshots stopped: another writer took over the store (${status.lastError?.code ?? 'conflict'}); this instance can no longer back up`);
  }
  if (status.state === 'closing' || status.state === 'closed') reasons.push(`database is ${status.state}`);
  if (pendingForMs !== null && pendingForMs > 2 * maxIntervalMs) {
    reasons.push(`${status.pendingCommits} commit(s) unsnapshotted for ${pendingForMs} ms, over twice the ${maxIntervalMs} ms ceiling`);
  }
  if (reasons.length > 0) result = 'unhealthy';
  else if (status.lastError && (!status.lastSnapshot || status.lastError.at > status.lastSnapshot.at)) {
    // The latest attempt failed but the library keeps retrying and the ceiling is not blown yet.
    result = 'degraded';
    reasons.push(`last snapshot attempt failed (${status.lastError.code}): ${status.lastError.message}`);
  }
  return { status: result, reasons, pendingForMs };
}
