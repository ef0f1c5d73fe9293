import { SyncError, errorMessage, isSyncError } from '../errors.ts';
import type { SyncLogger } from '../log.ts';
import type { LeaseGrant, Leaser, ObjectStore } from '../store/store.ts';
import { EMPTY_MANIFEST, MANIFEST_KEY, encodeManifest } from './manifest.ts';

/**
 * Whether a publish should renew first: the renewal timer runs every third of the duration, so a last
 * renewal more than half the duration ago means at least one was missed and the lease may have lapsed.
 */
export function leaseRenewalOverdue(renewedAt: number, durationSec: number, now: number): boolean {
  return now - renewedAt > (durationSec * 1000) / 2;
}

/** The lease calls, plus the one write that creates an empty manifest on a new store (only an existing object can be leased). */
export type LeaseStore = Leaser & Pick<ObjectStore, 'writeSmall'>;

/**
 * The single-writer lease, taken on the manifest blob itself: the store then refuses a manifest write
 * that does not carry the current lease id, so a writer that lost its lease is fenced by the storage
 * service, not only by its own bookkeeping.
 */
export class WriterLease {
  readonly id: string;
  readonly #store: LeaseStore;
  readonly #durationSec: number;
  readonly #log: SyncLogger;
  readonly #onLost: (error: SyncError) => void;
  #timer: NodeJS.Timeout | undefined;
  #renewedAt = 0;
  #state: 'held' | 'lost' | 'released' = 'released';

  constructor(options: { store: LeaseStore; id: string; durationSec: number; log: SyncLogger; onLost: (error: SyncError) => void }) {
    this.#store = options.store;
    this.id = options.id;
    this.#durationSec = options.durationSec;
    this.#log = options.log;
    this.#onLost = options.onLost;
  }

  get state(): 'held' | 'lost' | 'released' {
    return this.#state;
  }

  get renewedAt(): Date | null {
    return this.#renewedAt ? new Date(this.#renewedAt) : null;
  }

  /**
   * Takes the lease (creating an empty manifest first on a new store, since only an existing blob can be
   * leased). Throws `LEASE_HELD` while another instance holds it. Re-taking our own unexpired lease
   * (same id, e.g. after a crash and restart on the same disk) succeeds at once. Resolves with the
   * manifest's ETag at the grant, when the store reports it.
   */
  async acquire(): Promise<LeaseGrant> {
    let grant: LeaseGrant | void;
    try {
      grant = await this.#store.acquireLease(MANIFEST_KEY, this.id, this.#durationSec);
    } catch (error) {
      if (!isSyncError(error, 'NOT_FOUND')) throw error;
      await this.#store.writeSmall(MANIFEST_KEY, encodeManifest(EMPTY_MANIFEST), { ifNoneMatch: '*' }).catch((e: unknown) => {
        if (!isSyncError(e, 'CONFLICT')) throw e; // another instance created it first: fine, now race for the lease
      });
      grant = await this.#store.acquireLease(MANIFEST_KEY, this.id, this.#durationSec);
    }
    this.#state = 'held';
    this.#renewedAt = Date.now();
    this.#schedule();
    return { etag: grant?.etag };
  }

  /**
   * Renews now. A lease that lapsed (an outage longer than its duration) is re-taken with the same id:
   * the store grants that only while nobody else holds it, so fencing is unchanged. Throws `LEASE_LOST`
   * (and reports it once) when another instance holds it; a transient failure leaves the state 'held'.
   */
  async renew(): Promise<void> {
    if (this.#state !== 'held') throw this.#lostError();
    try {
      await this.#store.renewLease(MANIFEST_KEY, this.id);
    } catch (error) {
      if (isSyncError(error, 'NOT_FOUND')) {
        this.lost(error);
        throw this.#lostError(error);
      }
      if (!isSyncError(error, 'LEASE_LOST')) throw error;
      await this.retake(error);
      return;
    }
    this.#renewedAt = Date.now();
  }

  /**
   * Before a manifest publish: renews first if a renewal is overdue (the timer's last one is more than
   * half the duration old, so the lease may have lapsed while the network was down). Costs nothing
   * while the timer keeps the lease fresh.
   */
  async ensureFresh(): Promise<void> {
    if (leaseRenewalOverdue(this.#renewedAt, this.#durationSec, Date.now())) await this.renew();
  }

  /**
   * Re-takes our own lease with the same id (it expired, or the store refused a write carrying it).
   * Another instance holding it means we were taken over: reported as lost, thrown as `LEASE_LOST`.
   * A transient failure is thrown as is and leaves the state 'held' (we do not know yet).
   */
  async retake(cause?: unknown): Promise<void> {
    if (this.#state !== 'held') throw this.#lostError(cause);
    try {
      await this.#store.acquireLease(MANIFEST_KEY, this.id, this.#durationSec);
    } catch (error) {
      if (isSyncError(error, 'LEASE_HELD') || isSyncError(error, 'NOT_FOUND') || isSyncError(error, 'LEASE_LOST')) {
        this.lost(error);
        throw this.#lostError(error);
      }
      throw error;
    }
    if (this.#state !== 'held') throw this.#lostError(cause); // released or lost meanwhile
    this.#renewedAt = Date.now();
    this.#log.warn({ cause: cause === undefined ? undefined : errorMessage(cause) }, 'writer lease had lapsed; re-took it with the same id (nobody else held it)');
  }

  /** Marks the lease lost (a renewal or a fenced publish said so) and tells the owner once. */
  lost(cause?: unknown): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    clearTimeout(this.#timer);
    this.#onLost(this.#lostError(cause));
  }

  /**
   * Gives the lease up (clean shutdown) so the next instance takes over at once. Resolves false when the
   * store did not confirm the release (the lease then expires by itself).
   */
  async release(): Promise<boolean> {
    clearTimeout(this.#timer);
    if (this.#state !== 'held') return true;
    this.#state = 'released';
    return this.#store.releaseLease(MANIFEST_KEY, this.id).then(
      () => true,
      (error: unknown) => {
        // It expires by itself within durationSec; the next writer waits at most that long.
        this.#log.warn({ error: errorMessage(error) }, 'could not release the writer lease');
        return false;
      },
    );
  }

  /** Stops renewing without releasing: the lease lapses after its duration unless this id re-takes it. */
  stopRenewing(): void {
    clearTimeout(this.#timer);
    if (this.#state === 'held') this.#state = 'released';
  }

  #lostError(cause?: unknown): SyncError {
    return new SyncError(
      'LEASE_LOST',
      `This instance lost the writer lease on ${this.#store.location}/${MANIFEST_KEY} (another instance took over, or it could not be renewed in time); ` +
        `it takes no more snapshots and refuses writes. Restart it to continue as a replica or from the newer snapshot.`,
      cause === undefined ? {} : { cause },
    );
  }

  /** Renews every third of the duration: two more tries fit before it would expire. */
  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), (this.#durationSec * 1000) / 3);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (this.#state !== 'held') return;
    try {
      await this.renew();
    } catch (error) {
      if (this.#state !== 'held') return; // lost: already reported
      // Transient (network): keep trying past expiry; renew() re-takes a lapsed lease nobody else took.
      const overdueMs = Date.now() - this.#renewedAt - this.#durationSec * 1000;
      this.#log.warn({ error: errorMessage(error), overdueMs: Math.max(overdueMs, 0) }, 'writer lease renewal failed; retrying');
    }
    this.#schedule();
  }
}
