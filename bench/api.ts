/**
 * Phase 'api': the reference API (app/server.ts, a real child process on a copy of the dataset)
 * under autocannon. Each read route is measured idle (the baseline) and again while a second
 * autocannon posts documents, so commits pile up and snapshots run during the measurement.
 */
import autocannon from 'autocannon';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { killAndWait, spawnTs, waitForLine } from '../test/helpers/child.ts';
import { mulberry32, type Dataset } from './dataset.ts';
import { summarize, type Summary } from './stats.ts';

export const API_P99_BUDGET_MS = 200;

export interface ApiRouteResult {
  route: string;
  phase: 'idle' | 'with writes + snapshots';
  requests: number;
  rps: number;
  errors: number;
  latency: Summary;
}

export interface ApiResult {
  routes: ApiRouteResult[];
  writes: { requests: number; rps: number; errors: number; latency: Summary };
  /** Snapshots the server completed while the write phases ran (from /health). */
  snapshotsDuringWrites: number;
}

interface Route {
  name: string;
  path: (pick: () => number) => string;
}

function routes(ids: readonly string[]): Route[] {
  const prefixes = ['calm', 'bright', 'storm', 'quiet', 'neon', 'ember'];
  return [
    { name: 'GET /api/documents/:id', path: (pick) => `/api/documents/${encodeURIComponent(ids[Math.floor(pick() * ids.length)]!)}` },
    { name: 'GET /api/documents?type=&limit=50', path: (pick) => `/api/documents?type=${['persona', 'template', 'mood', 'scenario'][Math.floor(pick() * 4)]}&limit=50` },
    { name: 'GET /api/documents?namePrefix=', path: (pick) => `/api/documents?namePrefix=${prefixes[Math.floor(pick() * prefixes.length)]}&limit=20` },
    { name: 'GET /health', path: () => '/health' },
  ];
}

/** Runs autocannon and records every response time (autocannon's own histogram has no p95). */
async function load(url: string, durationS: number, connections: number, request: autocannon.Request): Promise<{ times: number[]; errors: number; requests: number; rps: number }> {
  const times: number[] = [];
  let errors = 0;
  // At run time the instance is an EventEmitter that is also awaitable (the typings only show the promise).
  const instance = autocannon({ url, connections, duration: durationS, requests: [request] }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode >= 400) errors++;
    times.push(responseTime);
  });
  const result = await instance;
  return { times, errors: errors + result.errors + result.timeouts, requests: result.requests.total, rps: result.requests.average };
}

async function snapshotsOk(url: string): Promise<number> {
  const health = (await (await fetch(`${url}/health`)).json()) as { sync: { snapshotsOk: number } };
  return health.sync.snapshotsOk;
}

export async function runApi(dataset: Dataset, work: string, ids: readonly string[], opts: { durationS: number; connections: number }): Promise<ApiResult> {
  const dbPath = join(work, 'api.db');
  await copyFile(dataset.path, dbPath);
  const server: ChildProcess = spawnTs('app/server.ts', [], {
    PORT: '0',
    DATABASE_URL: `file:${dbPath}`,
    BACKUP_DIR: join(work, 'api-store'),
    SNAPSHOT_DEBOUNCE_MS: '250',
    // The app's /health says 'unhealthy' once commits are pending for twice this ceiling. A 100k snapshot
    // under this load takes 1.2-2.1 s, so a 2 s ceiling put /health over that line between two snapshots
    // (503s in about 2 of 5 runs); at 4 s the write phases still see snapshots, and /health reports
    // only what a real outage would.
    SNAPSHOT_MAX_INTERVAL_MS: '4000',
    LOG_LEVEL: 'warn',
  });
  try {
    const url = (await waitForLine(server, 'LISTENING', 120_000)).split(' ')[1]!;
    const pick = mulberry32(42);
    const out: ApiRouteResult[] = [];
    let writes: ApiResult['writes'] | undefined;
    let posted = 0;
    const before = await snapshotsOk(url);
    for (const route of routes(ids)) {
      const read = (): autocannon.Request => ({ method: 'GET', setupRequest: (req) => ({ ...req, path: route.path(pick) }) });
      const idle = await load(url, opts.durationS, opts.connections, read());
      out.push({ route: route.name, phase: 'idle', requests: idle.requests, rps: idle.rps, errors: idle.errors, latency: summarize(idle.times) });
      const writer = load(url, opts.durationS, 2, {
        method: 'POST',
        path: '/api/documents',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ type: 'mood', name: `bench api ${process.pid} ${posted++}`, content: { note: 'posted during the API benchmark', n: posted } }) }),
      });
      const loaded = await load(url, opts.durationS, opts.connections, read());
      const w = await writer;
      out.push({ route: route.name, phase: 'with writes + snapshots', requests: loaded.requests, rps: loaded.rps, errors: loaded.errors, latency: summarize(loaded.times) });
      const prev = writes;
      writes = { requests: (prev?.requests ?? 0) + w.requests, rps: w.rps, errors: (prev?.errors ?? 0) + w.errors, latency: summarize(w.times) };
    }
    return { routes: out, writes: writes!, snapshotsDuringWrites: (await snapshotsOk(url)) - before };
  } finally {
    if (server.exitCode === null && server.signalCode === null) await killAndWait(server, 'SIGTERM');
  }
}
