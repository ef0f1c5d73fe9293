import { Worker } from 'node:worker_threads';
import { SyncError } from '../errors.ts';
import type { WorkerReply, WorkerRequest } from './worker-protocol.ts';

// From dist/ the worker is the compiled .js beside this file. From .ts sources (tsx), worker threads
// do not inherit tsx's loader on Node 20, so a tiny bootstrap registers it first.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './snapshot-worker.ts' : './snapshot-worker.js', import.meta.url);

function startWorker(request: WorkerRequest): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_URL, { workerData: request });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData: request });
}

export type WorkerSuccess = Extract<WorkerReply, { ok: true }>;

/** Runs one request in a fresh worker thread; rejects with the worker's typed error. */
export function runInWorker(request: WorkerRequest): Promise<WorkerSuccess> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const worker = startWorker(request);
    worker.once('message', (reply: WorkerReply) => {
      settled = true;
      if (reply.ok) resolve(reply);
      else reject(new SyncError(reply.code, reply.message));
    });
    worker.once('error', (error) => {
      if (settled) return;
      settled = true;
      reject(new SyncError('SNAPSHOT_FAILED', `Snapshot worker crashed: ${error.message}`, { cause: error }));
    });
    worker.once('exit', (code) => {
      if (settled) return;
      settled = true;
      reject(new SyncError('SNAPSHOT_FAILED', `Snapshot worker exited with code ${code} before replying.`));
    });
  });
}
