/**
 * Child process for test/faults/startup-kill.test.ts: opens the library (role 'auto', lease 15 s,
 * incremental snapshots) and sends itself a signal at one named point of its start-up, chosen by
 * counting the store calls it makes through a pass-through wrapper (like fault-writer.ts's phases).
 *
 * Start: prints `LOADED` once its modules are loaded (so the parent can spawn it one run ahead), then
 * waits for one stdin line `GO <json>` with { dbPath, container, prefix, point, signal }; EOF exits 0.
 *
 * Points, in start-up order:
 *   probe            store.probe() resolved
 *   manifest-read-1  the first manifest read resolved (before the lease)
 *   listing          the prefix listing resolved (snapshots/ then chunks/: only on a store without a manifest)
 *   lease            acquireLease resolved (the writer lease is now held, by the id in the sidecar)
 *   manifest-read-2  the manifest read after the lease resolved
 *   chunk-index      the snapshot's chunk index was read
 *   chunk-first      the first chunk download completed
 *   chunk-last       the last distinct chunk download completed (the file is not installed yet)
 *   resolved         drizzle() resolved (the library's SIGINT/SIGTERM handler is installed from here)
 *   first-write      the first write committed (not flushed)
 * Signals: SIGKILL, or SIGINT (before `resolved` nothing handles it and the process ends at once; from
 * `resolved` on the library's handler takes a final snapshot, then re-raises it).
 *
 * stdout (one line each):
 *   LOADED
 *   OPEN role=<role> ms=<drizzle() time>          (when drizzle() resolved)
 *   WROTE <id>                                    (the first write committed)
 *   DYING <point> <signal>                        (then the signal)
 *   ERROR <code> <message>                        (then exit 1)
 * stderr: the library's sync log as JSON lines.
 */
import { createInterface } from 'node:readline';
import { azureBlobStore, drizzle, findSyncError, type SnapshotStore, type SyncLogger } from 'drizzle-libsql-blob';
import { decodeChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { MANIFEST_KEY } from '../../src/sync/manifest.ts';
import { CREATE_NOTES, schema } from '../helpers/fixtures.ts';

export type StartupPoint =
  | 'probe'
  | 'manifest-read-1'
  | 'listing'
  | 'lease'
  | 'manifest-read-2'
  | 'chunk-index'
  | 'chunk-first'
  | 'chunk-last'
  | 'resolved'
  | 'first-write';

/** What the parent sends after `GO ` (the test imports these types only, never this module). */
export interface StartupKillOrder {
  dbPath: string;
  container: string;
  prefix: string;
  point: StartupPoint;
  signal: 'SIGKILL' | 'SIGINT';
}

const say = (line: string) => process.stdout.write(`${line}\n`);

await main();

async function main(): Promise<void> {
  const connectionString = process.env.FAULT_CONNECTION_STRING;
  if (!connectionString) {
    console.error('usage: FAULT_CONNECTION_STRING=... startup-killer.ts, then GO <json> on stdin');
    process.exit(2);
  }
  say('LOADED');
  const go = await new Promise<string | undefined>((resolve) => {
    const input = createInterface({ input: process.stdin });
    input.once('line', (l) => resolve(l.trim()));
    input.once('close', () => resolve(undefined));
  });
  if (!go?.startsWith('GO ')) process.exit(0);
  const order = JSON.parse(go.slice(3)) as StartupKillOrder;

  const die = (point: StartupPoint): void => {
    if (point !== order.point) return;
    say(`DYING ${point} ${order.signal}`);
    // With a handler installed (from `resolved` on), SIGINT arrives asynchronously: nothing more may
    // run meanwhile, and the loop must stay alive for the handler's final snapshot.
    setInterval(() => {}, 1_000);
    process.kill(process.pid, order.signal);
  };
  /** Never settles: the code after a kill point must not run (the signal ends the process). */
  const hang = () => new Promise<never>(() => {});

  const inner = azureBlobStore({ connectionString, container: order.container, prefix: order.prefix, requestTimeoutMs: 5_000 });
  const store = counted(inner, order.point, die, hang);

  const line = (level: string) => (fields: object, message?: string) => process.stderr.write(JSON.stringify({ level, message, ...fields }) + '\n');
  const log: SyncLogger = { info: line('info'), warn: line('warn'), error: line('error') };

  try {
    const openStarted = performance.now();
    const db = await drizzle({
      connection: { url: `file:${order.dbPath}` },
      schema,
      store,
      log,
      role: 'auto',
      lease: { durationSec: 15 },
      snapshot: { mode: 'incremental', chunkSize: 1 << 16, debounceMs: 60_000, maxIntervalMs: 300_000 },
      shutdown: { signals: true, timeoutMs: 10_000 },
    });
    say(`OPEN role=${db.$sync.status().role} ms=${Math.round(performance.now() - openStarted)}`);
    die('resolved');
    if (order.point === 'resolved') return await hang();
    // One commit: the table (absent on a store that started empty) and one row.
    const result = await db.$client.batch([CREATE_NOTES, { sql: 'INSERT INTO notes (body) VALUES (?)', args: ['written by the killed instance'] }], 'write');
    say(`WROTE ${String(result[1]!.lastInsertRowid)}`);
    die('first-write');
    await hang();
  } catch (error) {
    const found = findSyncError(error);
    say(`ERROR ${found?.code ?? 'OTHER'} ${String((found ?? (error as Error))?.message ?? error).replaceAll('\n', ' ')}`);
    process.exit(1);
  }
}

/**
 * Forwards every store call unchanged, counting the start-up's calls and calling `die(point)` right
 * after the call that completes each point (then never settling, so start-up goes no further).
 */
function counted(inner: SnapshotStore, target: StartupPoint, die: (point: StartupPoint) => void, hang: () => Promise<never>): SnapshotStore {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(inner)) {
    out[name] = typeof value === 'function' ? (...args: unknown[]) => (value as (...a: unknown[]) => unknown).apply(inner, args) : value;
  }
  const store = out as unknown as SnapshotStore;
  const reached = async (point: StartupPoint): Promise<void> => {
    die(point);
    if (point === target) await hang();
  };
  let manifestReads = 0;
  let lists = 0;
  let chunksTotal = 0;
  let chunksDone = 0;
  store.probe = async () => {
    await inner.probe();
    await reached('probe');
  };
  store.readSmall = async (key) => {
    const object = await inner.readSmall(key);
    if (key === MANIFEST_KEY) {
      manifestReads++;
      if (manifestReads === 1) await reached('manifest-read-1');
      if (manifestReads === 2) await reached('manifest-read-2');
    } else if (key.endsWith('.chunks.json') && object) {
      chunksTotal = new Set(decodeChunkIndex(object.body, key).chunks).size;
      await reached('chunk-index');
    }
    return object;
  };
  store.list = async (prefix) => {
    const objects = await inner.list(prefix);
    if (++lists === 2) await reached('listing'); // snapshots/, then chunks/
    return objects;
  };
  store.acquireLease = async (key, leaseId, durationSec) => {
    await inner.acquireLease(key, leaseId, durationSec); // a NOT_FOUND (empty store) is retried after creating the manifest
    await reached('lease');
  };
  store.download = (key) => {
    if (!key.startsWith('chunks/')) return inner.download(key);
    return (async function* () {
      for await (const part of inner.download(key)) yield part;
      chunksDone++;
      if (chunksDone === 1) await reached('chunk-first');
      if (chunksDone === chunksTotal) await reached('chunk-last');
    })();
  };
  return store;
}
