/**
 * Bench only, preloaded into the reference server by bench/api.ts with `--import` when the run asks for
 * `--artificial-delay-ms`: every HTTP request waits BENCH_API_DELAY_MS before the app sees it, so a test
 * can prove the API gate fails on slow responses. Neither the app nor the library knows about it.
 */
import { Server } from 'node:http';

const delayMs = Number(process.env.BENCH_API_DELAY_MS ?? '0');
if (delayMs > 0) {
  const emit = Server.prototype.emit;
  Server.prototype.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'request') return Reflect.apply(emit, this, [event, ...args]) as boolean;
    setTimeout(() => Reflect.apply(emit, this, [event, ...args]), delayMs);
    return true;
  } as typeof emit;
}
