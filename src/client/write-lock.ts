/**
 * A FIFO async mutex. libSQL runs statements synchronously and a second writer during an open
 * transaction gets SQLITE_BUSY (a busy timeout would block the event loop), so every write waits
 * here for its turn instead.
 */
export class WriteLock {
  #held = false;
  #waiters: Array<() => void> = [];

  get held(): boolean {
    return this.#held;
  }

  /** Resolves with a release function once the lock is ours. Call it exactly once. */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        this.#held = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.#release();
        });
      };
      if (this.#held) this.#waiters.push(grant);
      else grant();
    });
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  #release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#held = false;
  }
}
