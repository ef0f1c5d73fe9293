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
  /** The debounce timer: armed once per burst, not per commit (see #onDebounce). */
  #debounce: NodeJS.Timeout | undefined;
  /** When the armed debounce timer fires. */
  #debounceTimerAt = 0;
  /** When the debounce is due: the last commit + debounceMs (or a retry's time); commits only move this. */
  #debounceDueAt = 0;
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
    this.#debounceAt(lastCommitAt + this.#policy.debounceMs, now);
    const dueAt = firstPendingAt + this.#policy.maxIntervalMs;
    if (this.#ceilingDueAt !== dueAt) {
      clearTimeout(this.#ceiling);
      this.#ceilingDueAt = dueAt;
      this.#ceiling = setTimeout(() => this.#fire(), Math.max(0, dueAt - now));
    }
  }

  /** Retry after a failure, no sooner than `delayMs`. */
  retryIn(delayMs: number, now = Date.now()): void {
    this.cancel();
    this.#debounceAt(now + delayMs, now);
  }

  cancel(): void {
    clearTimeout(this.#debounce);
    clearTimeout(this.#ceiling);
    this.#debounce = undefined;
    this.#ceiling = undefined;
    this.#ceilingDueAt = undefined;
  }

  /**
   * The debounce is due at `dueAt`. This runs on every commit, so it touches no timer when one is armed
   * for no later than that (a commit only pushes the due time back): measured in bench/writes.ts, a
   * timer refresh per commit made our insert/update p50 2-3% slower than plain drizzle-orm/libsql. The
   * timer, when it fires early, re-arms itself for what is left (#onDebounce).
   */
  #debounceAt(dueAt: number, now: number): void {
    this.#debounceDueAt = dueAt;
    if (this.#debounce !== undefined && this.#debounceTimerAt <= dueAt) return;
    clearTimeout(this.#debounce);
    this.#debounceTimerAt = dueAt;
    this.#debounce = setTimeout(this.#onDebounce, Math.max(0, dueAt - now));
  }

  readonly #onDebounce = (): void => {
    this.#debounce = undefined;
    const now = Date.now();
    if (now < this.#debounceDueAt) this.#debounceAt(this.#debounceDueAt, now); // commits since pushed it back
    else this.#fire();
  };

  #fire(): void {
    this.cancel();
    this.#trigger();
  }
}
