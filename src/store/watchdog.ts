/**
 * Aborts an operation after `ms` without progress. The SDK has no client-side per-request timeout of its
 * own (tryTimeoutInMs is server-side only), so without this a silent network hangs a call forever.
 * Streaming calls `touch()` on every chunk, so a large transfer that keeps moving is never cut off.
 */
export class Watchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  timedOut = false;

  constructor(private readonly ms: number) {
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    clearTimeout(this.timer);
    if (this.controller.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.ms);
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.controller.abort();
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
