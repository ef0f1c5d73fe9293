/**
 * The scale-out path: when `connection` names a libSQL server or Turso (`libsql:`, `http(s):`, `ws(s):`),
 * or a Turso embedded replica (`syncUrl`), the server keeps the data and replicates it. `drizzle()` then
 * hands the connection to drizzle-orm/libsql unchanged: no store (not even `storeFromEnv()`), no lease,
 * no snapshots, no file lock, no commit counting. `db.$sync` still exists so the app's code does not
 * change, and its status says `role: 'remote'`.
 */
import type { Client, Config as LibsqlConfig } from '@libsql/client';
import type { DrizzleConfig } from 'drizzle-orm';
import type { LibSQLDatabase } from 'drizzle-orm/libsql';
import { SyncError } from './errors.ts';
import { resolveLogger, type SyncLogOption } from './log.ts';
import type { SyncHandle, SyncStatus } from './sync/sync-controller.ts';
import { durableTimeout, type DurableOptions } from './sync/durability.ts';

const REMOTE_SCHEMES = new Set(['libsql:', 'http:', 'https:', 'ws:', 'wss:']);

/**
 * The options of `drizzle()` that belong to this library, not to drizzle: none of them applies to a remote
 * connection (the server does what they configure), so they are left out of what drizzle is given.
 */
const SYNC_OPTIONS = ['store', 'snapshot', 'restore', 'role', 'lease', 'replica', 'shutdown', 'retry', 'log', 'synchronous', 'metrics', 'encryption'] as const;

/** True when `connection` is served by a libSQL server (its URL scheme) or is a Turso embedded replica (`syncUrl`). */
export function isRemoteConnection(connection: unknown): boolean {
  const url = typeof connection === 'string' ? connection : isObject(connection) ? connection['url'] : undefined;
  if (isObject(connection) && typeof connection['syncUrl'] === 'string' && connection['syncUrl'] !== '') return true;
  if (typeof url !== 'string') return false;
  const scheme = /^([a-z][a-z0-9+.-]*:)/i.exec(url)?.[1]?.toLowerCase();
  return scheme !== undefined && REMOTE_SCHEMES.has(scheme);
}

export type RemoteDatabase<TSchema extends Record<string, unknown>> = LibSQLDatabase<TSchema> & { $client: Client; $sync: SyncHandle };

/**
 * `drizzle-orm/libsql` over `createClient(connection)`, exactly as given. The sync options the config may
 * still carry (an app that only switched its URL) are ignored, and said so once in the log. Both are
 * imported here, not with the package: their HTTP/WebSocket clients add ~50 ms to every local start.
 */
export async function openRemote<TSchema extends Record<string, unknown>>(config: { connection: string | LibsqlConfig; log?: SyncLogOption } & DrizzleConfig<TSchema>): Promise<RemoteDatabase<TSchema>> {
  const [{ createClient }, { drizzle: drizzleLibsql }] = await Promise.all([import('@libsql/client'), import('drizzle-orm/libsql')]);
  const { connection, ...rest } = config;
  const log = resolveLogger(rest.log);
  const drizzleConfig: Record<string, unknown> = { ...rest };
  const ignored = SYNC_OPTIONS.filter((key) => drizzleConfig[key] !== undefined && key !== 'log');
  for (const key of SYNC_OPTIONS) delete drizzleConfig[key];

  const libsql: LibsqlConfig = typeof connection === 'string' ? { url: connection } : connection;
  const client = createClient(libsql);
  const db = drizzleLibsql({ ...(drizzleConfig as DrizzleConfig<TSchema>), client }) as RemoteDatabase<TSchema>;
  log.info(
    { server: serverOf(libsql), embeddedReplica: Boolean(libsql.syncUrl), ...(ignored.length > 0 ? { ignoredOptions: ignored } : {}) },
    'remote libSQL connection: the server keeps the data; no store, lease or snapshots here',
  );
  db.$sync = remoteHandle(client);
  return db;
}

/**
 * `db.$sync` for a remote connection: nothing to snapshot, verify or follow. `durable()` resolves at once
 * (the server acknowledged each commit durably). `flush()` and `verify()`
 * resolve null (there is no snapshot of this library's to take or check: back up with the server's own
 * tools); `close()` closes the client; no event ever fires.
 */
export function remoteHandle(client: Client): SyncHandle {
  let closed = false;
  const afterClose = (what: string) => new SyncError('CLOSED', `${what} after close(): the database is closed.`);
  const handle: SyncHandle = Object.freeze({
    flush: async () => {
      if (closed) throw afterClose('flush()');
      return null;
    },
    // The server made each commit durable before acknowledging it: nothing to wait for.
    durable: async (options?: DurableOptions) => {
      durableTimeout(options);
      if (closed) throw afterClose('durable()');
    },
    verify: async () => {
      if (closed) throw afterClose('verify()');
      return null;
    },
    status: (): SyncStatus => ({
      commits: 0, // not counted: the server is the one that commits
      pendingCommits: 0,
      lastSnapshot: null,
      lastError: null,
      snapshotsOk: 0,
      snapshotsFailed: 0,
      restoredFrom: null,
      state: closed ? 'closed' : 'idle',
      role: 'remote',
      lease: { state: 'none', renewedAt: null },
      localSeq: 0,
    }),
    close: async () => {
      if (closed) return;
      closed = true;
      client.close();
    },
    on: () => handle,
    off: () => handle,
    once: () => handle,
  } satisfies SyncHandle);
  return handle;
}

/** Scheme and host of the server, for the log: never the path's query (`?authToken=`) or the token. */
function serverOf(config: LibsqlConfig): string {
  const url = config.syncUrl ?? config.url;
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}`;
  } catch {
    return '(unparsable URL)';
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
