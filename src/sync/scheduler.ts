/**
 * When to snapshot: `debounceMs` after the last commit of a burst, at once when `maxCommits` are
 * pending, and never later than `maxIntervalMs` after the first unsnapshotted commit (the ceiling a
 * steady writer cannot push back). Owns its timers and nothing else; the controller decides what a
 * trigger does.
 */
export interface SchedulePolicy {
  debounceMs: number;
  maxCommits: number;
  maxIntervalMs: number;
}

export class SnapshotScheduler {
  readonly #policy: SchedulePolicy;
  readonly #trigger: () => void;
  #debounce: NodeJS.Timeout | undefined;
  #debounceMs = -1;
  #ceiling: NodeJS.Timeout | undefined;
  #ceilingDueAt: number | undefined;

  constructor(policy: SchedulePolicy, trigger: () => void) {
    this.#policy = policy;
    this.#trigger = trigger;
  }

  /**
   * Arms the timers for the current pending work.
   * @param pending commits not yet covered by a snapshot
   * @param firstPendingAt when the oldest of them committed
   * @param lastCommitAt when the newest committed
   */
  schedule(pending: number, firstPendingAt: number, lastCommitAt: number, now = Date.now()): void {
    if (pending <= 0) return this.cancel();
    // Decided here, on the commit itself, not only by timers: an app writing in a tight loop of
    // already-settled promises starves timers, and the ceiling must hold even then.
    if (pending >= this.#policy.maxCommits || now >= firstPendingAt + this.#policy.maxIntervalMs) return this.#fire();
    this.#setDebounce(Math.max(0, lastCommitAt + this.#policy.debounceMs - now));
    const dueAt = firstPendingAt + this.#policy.maxIntervalMs;
    if (this.#ceilingDueAt !== dueAt) {
      clearTimeout(this.#ceiling);
      this.#ceilingDueAt = dueAt;
      this.#ceiling = setTimeout(() => this.#fire(), Math.max(0, dueAt - now));
    }
  }

  /** Retry after a failure, no sooner than `delayMs`. */
  retryIn(delayMs: number): void {
    this.cancel();
    this.#setDebounce(delayMs);
  }

  cancel(): void {
    clearTimeout(this.#debounce);
    clearTimeout(this.#ceiling);
    this.#debounce = undefined;
    this.#ceiling = undefined;
    this.#ceilingDueAt = undefined;
  }

  #setDebounce(ms: number): void {
    // The common case, a commit restarting the full debounce, just rearms the existing timer (runs per commit).
    if (this.#debounce !== undefined && this.#debounceMs === ms) {
      this.#debounce.refresh();
      return;
    }
    clearTimeout(this.#debounce);
    this.#debounceMs = ms;
    this.#debounce = setTimeout(() => this.#fire(), ms);
  }

  #fire(): void {
    this.cancel();
    this.#trigger();
  }
}
