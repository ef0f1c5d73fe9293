/**
 * Where the CLI looks: the store (the library's own `storeFromEnv()`, with --backup-dir, --container
 * and --prefix on top) and the local database file (--db, else DATABASE_URL as the app reads it, else ./data/app.db).
 */
import { resolve } from 'node:path';
import { databasePath } from '../config.ts';
import { SyncError } from '../errors.ts';
import { directoryStore } from '../store/directory-store.ts';
import { createsContainerFromEnv, storeFromEnv } from '../store/from-env.ts';
import { retrying } from '../store/retrying-store.ts';
import type { SnapshotStore } from '../store/store.ts';
import { DEFAULT_RETRY, type RetryPolicy } from '../sync/retry.ts';
import type { GlobalOptions } from './args.ts';
import type { Output } from './output.ts';

type Env = Record<string, string | undefined>;

const AZURE_ACCOUNT_VARS = ['AZURE_STORAGE_CONNECTION_STRING', 'AZURE_STORAGE_CONTAINER_URL', 'AZURE_STORAGE_ACCOUNT_URL', 'AZURE_STORAGE_ACCOUNT_NAME'];

/** Empty counts as unset, as in the reference app's config. */
function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

export interface StoreChoice {
  store: SnapshotStore;
  /** Which setting chose it, for error messages: `--backup-dir`, `AZURE_STORAGE_CONNECTION_STRING`, ... */
  source: string;
  /** A missing container is created by the first write that probes (AZURE_STORAGE_CREATE_CONTAINER=true). */
  createsContainer: boolean;
}

export function selectStore(options: Pick<GlobalOptions, 'backupDir' | 'prefix' | 'container'>, env: Env = process.env): StoreChoice {
  const prefix = options.prefix || undefined;
  if (options.backupDir !== undefined) return { store: directoryStore({ dir: options.backupDir, prefix }), source: '--backup-dir', createsContainer: false };
  const azure = AZURE_ACCOUNT_VARS.find((name) => read(env, name) !== undefined);
  if (azure !== undefined) {
    // --prefix replaces AZURE_STORAGE_PREFIX ('' is the container root), --container AZURE_STORAGE_CONTAINER.
    const overrides: Env = {
      ...(options.prefix === undefined ? {} : { AZURE_STORAGE_PREFIX: options.prefix }),
      ...(options.container === undefined ? {} : { AZURE_STORAGE_CONTAINER: options.container }),
    };
    const merged = { ...env, ...overrides };
    return { store: storeFromEnv(merged), source: azure, createsContainer: createsContainerFromEnv(merged) };
  }
  if (options.container !== undefined) {
    throw new SyncError('CONFIG', `--container names an Azure container, but no Azure account is set: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT_NAME.`);
  }
  if (options.prefix === undefined) {
    return { store: storeFromEnv(env), source: read(env, 'BACKUP_DIR') ? 'BACKUP_DIR' : 'the default ./.data/backups (no AZURE_STORAGE_* or BACKUP_DIR set)', createsContainer: false };
  }
  // The local directory store takes --prefix as a sub-folder.
  const dir = read(env, 'BACKUP_DIR');
  return { store: directoryStore({ dir: dir ?? './.data/backups', prefix }), source: dir ? 'BACKUP_DIR' : 'the default ./.data/backups', createsContainer: false };
}

/** --db takes a path (or a file: URL); DATABASE_URL must be a file: URL, as drizzle-kit and the app read it. */
export function selectDatabase(options: Pick<GlobalOptions, 'db'>, env: Env = process.env): string {
  if (options.db !== undefined) return options.db.startsWith('file:') ? databasePath(options.db) : resolve(options.db);
  const url = read(env, 'DATABASE_URL');
  if (url === undefined) return resolve('./data/app.db');
  if (!url.startsWith('file:')) {
    throw new SyncError('CONFIG', `DATABASE_URL must be a local file URL such as "file:./data/app.db"; got ${JSON.stringify(url)}. Pass --db FILE to name the file directly.`);
  }
  return databasePath(url);
}

/** Every store call the CLI makes is retried with this (transient failures only). */
export const CLI_RETRY: RetryPolicy = DEFAULT_RETRY;

export interface CliContext {
  /** The selected store, retrying (`retrying()`, CLI_RETRY): commands call it plainly. */
  store: SnapshotStore;
  storeSource: string;
  /** AZURE_STORAGE_CREATE_CONTAINER=true: a missing container is no error for `restore --if-exists` (the first snapshot creates it). */
  createsContainer: boolean;
  /** Resolved on first use, so commands that do not need the file never fail on a bad DATABASE_URL. */
  dbPath(): string;
  out: Output;
}

export function createContext(options: GlobalOptions, out: Output, env: Env = process.env): CliContext {
  const { store, source, createsContainer } = selectStore(options, env);
  let dbPath: string | undefined;
  return { store: retrying(store, CLI_RETRY, out.log), storeSource: source, createsContainer, out, dbPath: () => (dbPath ??= selectDatabase(options, env)) };
}
