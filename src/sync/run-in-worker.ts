import { Worker } from 'node:worker_threads';
import { SyncError } from '../errors.ts';
import type { WorkerAck, WorkerInput, WorkerNeed, WorkerReply, WorkerRequest } from './worker-protocol.ts';

// From dist/ the worker is the compiled .js beside this file. From .ts sources (tsx), worker threads
// do not inherit tsx's loader on Node 20, so a tiny bootstrap registers it first.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './file-worker.ts' : './file-worker.js', import.meta.url);
/** Chunks sent but not yet decoded: bounds the restore's memory (a full snapshot's 8 MiB ranges: 32 MiB; 4 vs 8 measured the same speed and ~15 MiB lower peak at 1M rows) while the download runs ahead as the worker boots. */
const MAX_IN_FLIGHT = 4;

function startWorker(request: WorkerRequest): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_URL, { workerData: request });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData: request });
}

export type WorkerSuccess = Extract<WorkerReply, { ok: true }>;

export interface WorkerJob {
  /** Resolves once the worker has room for more (at most MAX_IN_FLIGHT chunks queued). The chunk is handed over: do not use it afterwards. */
  send(chunk: Buffer, indexes?: number[]): Promise<void>;
  end(): void;
  /** Stops the worker (e.g. the download failed); `result` then rejects. */
  terminate(): Promise<void>;
  readonly result: Promise<WorkerSuccess>;
  /** 'assemble' with a base: the chunk indexes the worker still needs (rejects if it fails first). */
  readonly needed: Promise<number[]>;
}

/** Starts a worker thread for one request; for 'restore' the caller streams input into it. */
export function startWorkerJob(request: WorkerRequest): WorkerJob {
  const worker = startWorker(request);
  let inFlight = 0;
  // Several senders may wait at once (parallel chunk downloads): wake them all, each re-checks.
  let waiters: Array<() => void> = [];
  const wake = () => {
    const woken = waiters;
    waiters = [];
    for (const w of woken) w();
  };
  let settled = false;
  let gotNeed: (need: number[]) => void = () => {};
  const needed = new Promise<number[]>((resolve) => (gotNeed = resolve));
  const result = new Promise<WorkerSuccess>((resolve, reject) => {
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      wake();
      fn();
    };
    worker.on('message', (message: WorkerReply | WorkerAck | WorkerNeed) => {
      if ('need' in message) {
        gotNeed(message.need);
        return;
      }
      if ('ack' in message) {
        inFlight--;
        wake();
        return;
      }
      settle(() => (message.ok ? resolve(message) : reject(new SyncError(message.code, message.message))));
    });
    worker.once('error', (error) => settle(() => reject(new SyncError('SNAPSHOT_FAILED', `Snapshot worker crashed: ${error.message}`, { cause: error }))));
    worker.once('exit', (code) => settle(() => reject(new SyncError('SNAPSHOT_FAILED', `Snapshot worker exited with code ${code} before replying.`))));
  });
  result.catch(() => undefined); // the caller observes it; never an unhandled rejection meanwhile
  const neededOrDone = Promise.race([needed, result.then(() => [])]);
  neededOrDone.catch(() => undefined); // only awaited by 'assemble' jobs with a base
  return {
    async send(chunk: Buffer, indexes?: number[]) {
      while (inFlight >= MAX_IN_FLIGHT && !settled) await new Promise<void>((r) => waiters.push(r));
      if (settled) return; // the worker already failed or finished: `result` says why
      inFlight++;
      // Hand the memory over when the buffer owns all of it (the caller gives it up); copy a view into
      // a shared pool or larger read buffer, which must not be detached under its other users.
      const owned = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
      const message = owned ? new Uint8Array(chunk.buffer) : Uint8Array.from(chunk);
      worker.postMessage((indexes ? { chunk: message, indexes } : { chunk: message }) satisfies WorkerInput, [message.buffer]);
    },
    end() {
      if (!settled) worker.postMessage({ end: true } satisfies WorkerInput);
    },
    async terminate() {
      await worker.terminate();
    },
    result,
    needed: neededOrDone,
  };
}

/** Runs one self-contained request (no streamed input) in a fresh worker thread. */
export function runInWorker(request: WorkerRequest): Promise<WorkerSuccess> {
  return startWorkerJob(request).result;
}
