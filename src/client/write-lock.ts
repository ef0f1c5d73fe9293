/**
 * A FIFO async mutex. libSQL runs statements synchronously and a second writer during an open
 * transaction gets SQLITE_BUSY (a busy timeout would block the event loop), so every write waits
 * here for its turn instead.
 *
 * Invariant: nobody waits while the lock is free (a release hands the lock straight to the next
 * waiter), so `tryAcquire()` taking a free lock at once never overtakes anyone: FIFO order holds.
 */
export class WriteLock {
  #held = false;
  #waiters: Array<() => void> = [];

  get held(): boolean {
    return this.#held;
  }

  /**
   * The fast path: takes the lock synchronously when it is free and returns true; returns false (and
   * queues nothing) when it is held. Whoever got true must call `release()` exactly once.
   */
  tryAcquire(): boolean {
    if (this.#held) return false;
    this.#held = true;
    return true;
  }

  /**
   * Gives the lock to the next waiter, or frees it. For a holder that took it with `tryAcquire()` (or
   * got it from `acquire()` and gives it back here instead of through the returned function).
   */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#held = false;
  }

  /** Resolves with a release function once the lock is ours. Call it exactly once (a second call is a no-op). */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        this.#held = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.release();
        });
      };
      if (this.#held) this.#waiters.push(grant);
      else grant();
    });
  }
}
