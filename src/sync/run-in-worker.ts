/**
 * The file workers: a small pool of threads started on first use and reused by every later request
 * (snapshot copies, chunk encoding, restores, quick_check, fsync). Starting a worker costs 80-140 ms
 * (tsx from source: more), which every snapshot and restore used to pay. Each worker serves one job at
 * a time; a job waits for a free worker when all are busy. Idle workers are `unref()`'d so they never
 * keep the process alive; a worker that crashed or exited is dropped and replaced on next use.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SyncError } from '../errors.ts';
import { BACKGROUND_OPS, type ChunksPinned, type FromWorker, type ResultFor, type ToWorker, type WorkerOp, type WorkerReply, type WorkerRequest, type WorkerResults } from './worker-protocol.ts';

// From dist/ the worker is the compiled .js beside this file. From .ts sources (tsx), worker threads
// do not inherit tsx's loader on Node 20, so a tiny bootstrap registers it first.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './file-worker.ts' : './file-worker.js', import.meta.url);
/** Default bound on a job's chunks sent but not yet consumed (a full snapshot's 8 MiB ranges: 32 MiB). */
const MAX_IN_FLIGHT = 4;

/**
 * Workers in the pool: every core, at least 3, at most 4 (memory, diminishing returns). At least 3 so
 * that a compaction's long job (seconds) leaves a worker each to the checkpointer and to the uploads
 * callers wait for: with 2, a delta waited 140 ms for a free worker at 1M rows on 2 cores.
 */
export const POOL_SIZE = Math.min(4, Math.max(3, availableParallelism()));

interface Slot {
  readonly worker: Worker;
  /** The job it runs, if any (one at a time). */
  job: PooledJob | undefined;
  dead: boolean;
  /** Booted: its module has loaded and it serves messages at once. */
  ready: boolean;
  /** The local-file driver (@libsql/client/sqlite3) loaded ahead of a job that needs it (see warmWorkers). */
  libsqlLoaded: boolean;
  /** It has run a background op, so its thread runs at a lower priority for good (see pickSlot). */
  lowered: boolean;
}

let nextId = 1;
let starts = 0;
/** Some caller asked for warm workers with the local-file driver loaded: every worker started from then on loads it at boot. */
let libsqlWanted = false;
const slots: Slot[] = [];
/** Jobs waiting for a free worker, oldest first. */
const waiting: PooledJob[] = [];

export function spawnWorker(): Worker {
  starts++;
  if (!FROM_SOURCE) return new Worker(WORKER_URL);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(bootstrap, { eval: true });
}

function startSlot(): Slot {
  const slot: Slot = { worker: spawnWorker(), job: undefined, dead: false, ready: false, libsqlLoaded: false, lowered: false };
  slot.worker.unref();
  // Again once it is online: a worker unref'd before it came up still held the process open (a
  // MessagePort of its start stays referenced), which a warmed worker that never got a job showed.
  slot.worker.once('online', () => {
    if (slot.job === undefined) slot.worker.unref();
  });
  slot.worker.on('message', (message: FromWorker) => {
    if ('ready' in message) slot.ready = true;
    else if ('warmed' in message) slot.libsqlLoaded = true;
    else slot.job?.receive(message);
  });
  if (libsqlWanted) loadLibsqlIn(slot);
  const lost = (why: string, cause?: unknown) => {
    if (slot.dead) return;
    slot.dead = true;
    slots.splice(slots.indexOf(slot), 1);
    const job = slot.job;
    slot.job = undefined;
    job?.fail(new SyncError('SNAPSHOT_FAILED', why, cause === undefined ? {} : { cause }));
    assignWaiting(); // a replacement may start for a waiting job
  };
  slot.worker.on('error', (error) => lost(`File worker crashed: ${error.message}`, error));
  slot.worker.on('exit', (code) => lost(`File worker exited with code ${code} before replying.`));
  slots.push(slot);
  return slot;
}

/** What pickSlot sees of a worker. */
export interface SlotView {
  free: boolean;
  lowered: boolean;
}

/**
 * Which worker a job goes to (pure): an index into `slots`, 'start' for a new worker, or null to wait.
 * A background op lowers its worker's priority for good (file-worker.ts: an unprivileged thread cannot
 * raise it again), so a free worker of the job's own kind comes first: background ops on workers
 * already lowered, every other op on one at the process's priority (a page delta that callers wait
 * for, run at nice 10 beside a compaction, Azurite and the app's thread on 2 cores, is starved). Then
 * a free worker of the other kind (cheaper than a worker's boot, 80-140 ms), then a new one.
 */
export function pickSlot(slots: readonly SlotView[], background: boolean, poolSize: number): number | 'start' | null {
  const free = (lowered: boolean) => slots.findIndex((s) => s.free && s.lowered === lowered);
  const own = free(background);
  if (own >= 0) return own;
  const other = free(!background);
  if (other >= 0) return other;
  return slots.length < poolSize ? 'start' : null;
}

function freeSlot(op: WorkerRequest['op']): Slot | undefined {
  const live = slots.filter((s) => !s.dead);
  const background = BACKGROUND_OPS.has(op);
  const pick = pickSlot(live.map((s) => ({ free: s.job === undefined, lowered: s.lowered })), background, POOL_SIZE);
  const slot = pick === null ? undefined : pick === 'start' ? startSlot() : live[pick];
  if (slot && background) slot.lowered = true;
  return slot;
}

function assignWaiting(): void {
  while (waiting.length > 0) {
    const slot = freeSlot(waiting[0]!.op);
    if (!slot) return;
    waiting.shift()!.attach(slot);
  }
}

function loadLibsqlIn(slot: Slot): void {
  slot.worker.postMessage({ warm: 'libsql' } satisfies ToWorker); // served between jobs: a job it runs meanwhile is not interrupted
}

export interface WarmOptions {
  /**
   * Each worker also loads the local-file driver (@libsql/client/sqlite3) now, and so does every one
   * started later. A worker loads it on its first job that opens the database otherwise, and that job
   * paid 45-55 ms: the first page delta a writer sent to a worker that had only booted (when a
   * compaction took the worker the deltas had used) held its durable() callers that much longer.
   */
  libsql?: boolean;
}

/** Starts up to `count` workers now (default 1) so a later request does not wait for one to boot. They stay idle and unref'd. */
export function warmWorkers(count = 1, options: WarmOptions = {}): void {
  while (slots.length < Math.min(count, POOL_SIZE)) startSlot();
  if (options.libsql && !libsqlWanted) {
    libsqlWanted = true;
    for (const slot of slots) if (!slot.dead) loadLibsqlIn(slot);
  }
}

/**
 * Starts workers up to `count` and resolves once `count` are ready and free (or after `maxWaitMs`):
 * a long background job waits for this so that the jobs callers wait for never pay a worker's boot
 * (nor, once asked for, its load of the local-file driver: see readyWorkers).
 */
export async function workersReady(count: number, maxWaitMs = 2_000): Promise<void> {
  warmWorkers(count);
  const until = Date.now() + maxWaitMs;
  while (readyWorkers() < Math.min(count, POOL_SIZE) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** Workers running and free right now: a job given to one starts at once, without a worker boot. */
export function idleWorkers(): number {
  return slots.filter((s) => !s.dead && s.job === undefined).length;
}

/**
 * Workers booted and free right now, with the local-file driver loaded once a caller asked for it
 * (warmWorkers' `libsql`): a job given to one is served at once, without waiting for either.
 */
export function readyWorkers(): number {
  return slots.filter((s) => !s.dead && s.ready && (s.libsqlLoaded || !libsqlWanted) && s.job === undefined).length;
}

/** Workers that have loaded the local-file driver ahead of their jobs (tests). */
export function libsqlWarmWorkers(): number {
  return slots.filter((s) => !s.dead && s.libsqlLoaded).length;
}

/** How many worker threads this process has started (tests: reuse means this does not grow). */
export function workerStarts(): number {
  return starts;
}

/** Terminates every idle worker (tests; a later request starts fresh ones). Busy workers are left alone. */
export async function stopIdleWorkers(): Promise<void> {
  const idle = slots.filter((s) => s.job === undefined && !s.dead);
  for (const slot of idle) {
    slot.dead = true; // no job is given to a worker on its way out
    slots.splice(slots.indexOf(slot), 1);
  }
  await Promise.all(idle.map((s) => s.worker.terminate()));
}

export interface WorkerJob<Op extends WorkerOp = WorkerOp> {
  /** Resolves once the job has room for more (at most `maxInFlight` chunks queued). The chunk is handed over: do not use it afterwards. */
  send(chunk: Buffer, indexes?: number[]): Promise<void>;
  end(): void;
  /** Ends the job with an error (e.g. the download failed) and resolves once the worker has let it go; `result` then rejects. */
  abort(): Promise<void>;
  /** Chunks sent and not yet consumed by the worker. */
  readonly inFlight: number;
  readonly settled: boolean;
  readonly result: Promise<ResultFor<Op>>;
}

class PooledJob {
  readonly id = nextId++;
  readonly op: WorkerRequest['op'];
  #slot: Slot | undefined;
  /** Messages for the worker while the job waits for one. */
  #pending: Array<{ message: ToWorker; transfer: ArrayBuffer[] }> = [];
  inFlight = 0;
  settled = false;
  #waiters: Array<() => void> = [];
  #resolve!: (reply: WorkerReply & { ok: true }) => void;
  #reject!: (error: Error) => void;
  readonly result: Promise<WorkerReply & { ok: true }>;
  readonly #onPinned: ((pinned: ChunksPinned) => void) | undefined;

  constructor(request: WorkerRequest, onPinned?: (pinned: ChunksPinned) => void) {
    this.op = request.op;
    this.#onPinned = onPinned;
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.result.catch(() => undefined); // the caller observes it; never an unhandled rejection meanwhile
    this.#post({ id: this.id, request });
  }

  attach(slot: Slot): void {
    this.#slot = slot;
    slot.job = this;
    slot.worker.ref(); // busy: the process waits for the reply
    for (const { message, transfer } of this.#pending) slot.worker.postMessage(message, transfer);
    this.#pending = [];
  }

  #post(message: ToWorker, transfer: ArrayBuffer[] = []): void {
    if (this.#slot) this.#slot.worker.postMessage(message, transfer);
    else this.#pending.push({ message, transfer });
  }

  receive(message: Exclude<FromWorker, { ready: true } | { warmed: 'libsql' }>): void {
    if (message.id !== this.id) return;
    if ('ack' in message) {
      this.inFlight--;
      this.#wake();
      return;
    }
    if ('pinned' in message) {
      this.#onPinned?.(message.pinned);
      return;
    }
    const { reply } = message;
    this.#release();
    if (reply.ok) this.#settle(() => this.#resolve(reply));
    else this.#settle(() => this.#reject(new SyncError(reply.code, reply.message)));
  }

  fail(error: Error): void {
    this.#slot = undefined;
    this.#settle(() => this.#reject(error));
  }

  #settle(fn: () => void): void {
    if (this.settled) return;
    this.settled = true;
    this.#pending = [];
    this.#wake();
    fn();
  }

  /** The worker is free again: idle (unref'd) or on to the next waiting job. */
  #release(): void {
    const slot = this.#slot;
    this.#slot = undefined;
    if (!slot || slot.job !== this) return;
    slot.job = undefined;
    slot.worker.unref();
    assignWaiting();
  }

  #wake(): void {
    const woken = this.#waiters;
    this.#waiters = [];
    for (const w of woken) w();
  }

  async send(chunk: Buffer, maxInFlight: number, indexes?: number[]): Promise<void> {
    // Several senders may wait at once (parallel chunk downloads): all are woken, each re-checks.
    while (this.inFlight >= maxInFlight && !this.settled) await new Promise<void>((r) => this.#waiters.push(r));
    if (this.settled) return; // the job already failed or finished: `result` says why
    this.inFlight++;
    // Hand the memory over when the buffer owns all of it (the caller gives it up); copy a view into
    // a shared pool or larger read buffer, which must not be detached under its other users.
    const owned = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
    const data = owned ? new Uint8Array(chunk.buffer) : Uint8Array.from(chunk);
    this.#post(indexes ? { id: this.id, chunk: data, indexes } : { id: this.id, chunk: data }, [data.buffer as ArrayBuffer]);
  }

  end(): void {
    if (!this.settled) this.#post({ id: this.id, end: true });
  }

  async abort(): Promise<void> {
    if (this.settled) return;
    if (!this.#slot) {
      // Still waiting for a worker: it never started.
      waiting.splice(waiting.indexOf(this), 1);
      this.#settle(() => this.#reject(new SyncError('SNAPSHOT_FAILED', 'The file worker job was aborted before it started.')));
      return;
    }
    this.#post({ id: this.id, abort: true });
    await this.result.then(
      () => undefined,
      () => undefined,
    );
  }
}

/**
 * Starts a job on a pooled worker (or queues it until one is free); 'restore' and 'write-chunks' take
 * streamed input; `onPinned` hears a 'chunks' op's pin (its request's `record.announce`).
 */
export function startWorkerJob<R extends WorkerRequest>(request: R, { maxInFlight = MAX_IN_FLIGHT, onPinned }: { maxInFlight?: number; onPinned?: (pinned: ChunksPinned) => void } = {}): WorkerJob<R['op']> {
  const job = new PooledJob(request, onPinned);
  const slot = waiting.length === 0 ? freeSlot(request.op) : undefined;
  if (slot) job.attach(slot);
  else waiting.push(job);
  return {
    send: (chunk, indexes) => job.send(chunk, maxInFlight, indexes),
    end: () => job.end(),
    abort: () => job.abort(),
    get inFlight() {
      return job.inFlight;
    },
    get settled() {
      return job.settled;
    },
    result: job.result as Promise<unknown> as Promise<ResultFor<R['op']>>,
  };
}

/** Runs one self-contained request (no streamed input) on a pooled worker thread. */
export function runInWorker<R extends WorkerRequest>(request: R): Promise<{ ok: true } & WorkerResults[R['op']]> {
  return startWorkerJob(request).result;
}
