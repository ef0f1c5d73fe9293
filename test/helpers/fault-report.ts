/**
 * Shared pieces of the fault-injection suite (test/faults-*.test.ts): the one summary line each
 * scenario prints, a line-oriented view of a child process, an event-loop stall monitor and an
 * unhandled-rejection trap. Nothing here sleeps to wait for something: every wait is on an event
 * (a line, an exit) and bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Prints `FAULT <name>: k=v k=v ... (12.3 s)` as a test diagnostic and on stdout (so it shows in the
 * `npm test` log whatever the reporter), and returns it.
 */
export function faultSummary(t: TestContext, name: string, fields: Record<string, string | number>, startedAt: number): string {
  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
  const line = `FAULT ${name}: ${Object.entries(fields)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')} (${seconds} s)`;
  t.diagnostic(line);
  console.log(line);
  return line;
}

export interface LineChild {
  readonly proc: ChildProcess;
  /** Every stdout line so far, in order. */
  readonly lines: readonly string[];
  /** Resolves after the process exited and its output was drained. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Resolves with the first stdout line at index >= `from` matching `pattern` (and its index); rejects
   * if the child exits first or after `timeoutMs`.
   */
  waitFor(pattern: RegExp, options?: { from?: number; timeoutMs?: number }): Promise<{ match: RegExpExecArray; index: number }>;
  /** Writes one line to the child's stdin. */
  send(line: string): void;
  /** SIGKILLs the child if it still runs and waits for it. */
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last stdout lines and stderr, for failure messages. */
  tail(): string;
}

const STDERR_KEEP = 8_000;

/**
 * Spawns a TypeScript child (tsx, source condition, like child.ts's spawnTs, plus a stdin pipe) and
 * follows its stdout line by line.
 */
export function spawnLineChild(script: string, args: string[], env: NodeJS.ProcessEnv = {}): LineChild {
  const proc = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', script, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  proc.stdin!.on('error', () => {}); // EPIPE once the child is gone
  const lines: string[] = [];
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEEP);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('close', (code, signal) => resolve({ code, signal })),
  );
  // A crashed test run must not leave writers behind.
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));
  let ended = false;
  void exited.then(() => (ended = true));

  const waiters = new Set<() => void>();
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const waiter of waiters) waiter();
  });
  const tail = () => `--- child stdout (last 30 of ${lines.length} lines) ---\n${lines.slice(-30).join('\n')}\n--- child stderr (tail) ---\n${stderr}`;

  return {
    proc,
    lines,
    exited,
    tail,
    waitFor(pattern, { from = 0, timeoutMs = 30_000 } = {}) {
      return new Promise((resolve, reject) => {
        let scanned = from;
        const check = () => {
          for (; scanned < lines.length; scanned++) {
            const match = pattern.exec(lines[scanned]!);
            if (match) return done(undefined, { match, index: scanned });
          }
        };
        const timer = setTimeout(() => done(new Error(`child printed no ${pattern} within ${timeoutMs} ms\n${tail()}`)), timeoutMs);
        const onExit = () => {
          check(); // lines drained before 'close'
          done(new Error(`child exited before printing ${pattern}\n${tail()}`));
        };
        let settled = false;
        function done(error?: Error, value?: { match: RegExpExecArray; index: number }) {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          waiters.delete(check);
          if (error) reject(error);
          else resolve(value!);
        }
        waiters.add(check);
        void exited.then(onExit);
        check();
      });
    },
    send(line) {
      proc.stdin!.write(`${line}\n`);
    },
    async kill() {
      if (!ended && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      return exited;
    },
  };
}

/**
 * Measures how long the event loop was blocked, two ways: perf_hooks' histogram of timer delays and
 * the drift of a 10 ms interval. `mark(label)` names what runs now, so the worst stalls can be told
 * apart; `stop()` returns the worst of both measures, in ms, and the three worst drifts with their label.
 */
export function startLoopMonitor(): {
  mark(label: string): void;
  stop(): { maxStallMs: number; histogramMaxMs: number; driftMaxMs: number; worst: string[] };
} {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const period = 10;
  let last = performance.now();
  let driftMax = 0;
  let label = '';
  let labelAtTick = '';
  const worst: Array<{ ms: number; label: string }> = [];
  const timer = setInterval(() => {
    const now = performance.now();
    const drift = now - last - period;
    last = now;
    driftMax = Math.max(driftMax, drift);
    if (drift > 20) {
      // Named after what was running when the gap began (the label may have changed since).
      worst.push({ ms: drift, label: labelAtTick });
      worst.sort((a, b) => b.ms - a.ms).splice(3);
    }
    labelAtTick = label;
  }, period);
  return {
    mark(next) {
      label = next;
      if (!labelAtTick) labelAtTick = next;
    },
    stop() {
      clearInterval(timer);
      histogram.disable();
      // The histogram's samples include the 10 ms resolution itself.
      const histogramMaxMs = Math.max(0, histogram.max / 1e6 - period);
      return {
        maxStallMs: Math.max(histogramMaxMs, driftMax),
        histogramMaxMs,
        driftMaxMs: driftMax,
        worst: worst.map((w) => `${w.ms.toFixed(1)} ms during ${w.label || '?'}`),
      };
    },
  };
}

/** Collects unhandled rejections until `stop()`. */
export function trapUnhandledRejections(): { readonly reasons: unknown[]; stop(): void } {
  const reasons: unknown[] = [];
  const listener = (reason: unknown) => reasons.push(reason);
  process.on('unhandledRejection', listener);
  return { reasons, stop: () => process.off('unhandledRejection', listener) };
}

/** A uniform random integer in [min, max]. */
export const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
