/**
 * The three ways the benchmark opens a database file: ours (drizzle-libsql-blob's drizzle(), the
 * counting client over @libsql/client), plain drizzle-orm/libsql and drizzle-orm/better-sqlite3.
 * All three run in WAL mode, as ours does, so they read and write the same way.
 */
import { copyFile, rm } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { createClient } from '@libsql/client';
import Database from 'better-sqlite3';
import { drizzle as drizzleBetter } from 'drizzle-orm/better-sqlite3';
import { drizzle as drizzleLibsql } from 'drizzle-orm/libsql';
import { sql } from 'drizzle-orm';
import type { BaseSQLiteDatabase } from 'drizzle-orm/sqlite-core';
import { drizzle, type BlobDatabase, type SnapshotOptions, type Leaser, type SnapshotStore, type SyncLogger } from './lib.ts';
import { documents } from '../schema/documents.ts';

export const schema = { documents };
export type Schema = typeof schema;
export type AnyDb = BaseSQLiteDatabase<'sync' | 'async', unknown, Schema>;
export type DriverName = 'ours' | 'drizzle-orm/libsql' | 'drizzle-orm/better-sqlite3' | 'drizzle-orm/libsql, synchronous=FULL (its default)';

export interface Driver {
  name: DriverName;
  db: AnyDb;
  close(): Promise<void>;
}

/** Timers far beyond any phase: no snapshot runs unless the benchmark calls flush(). */
export const NO_AUTO_SNAPSHOT: SnapshotOptions = { debounceMs: 1e9, maxCommits: 1e9, maxIntervalMs: 1e9 };

export async function openOurs(path: string, store: SnapshotStore, snapshot: SnapshotOptions = NO_AUTO_SNAPSHOT, log: SyncLogger | false = false): Promise<BlobDatabase<Schema>> {
  return drizzle({ connection: { url: pathToFileURL(path).href }, schema, store, snapshot, restore: 'if-exists', shutdown: { signals: false, timeoutMs: 600_000 }, log });
}

export function oursDriver(db: BlobDatabase<Schema>): Driver {
  return { name: 'ours', db: db as unknown as AnyDb, close: () => db.$sync.close() };
}

export async function openLibsql(path: string, name: DriverName = 'drizzle-orm/libsql'): Promise<Driver> {
  const client = createClient({ url: pathToFileURL(path).href });
  await client.execute('PRAGMA journal_mode=WAL');
  return { name, db: drizzleLibsql({ client, schema }) as unknown as AnyDb, close: async () => client.close() };
}

export async function openBetterSqlite(path: string): Promise<Driver> {
  const sqlite = new Database(path);
  sqlite.pragma('journal_mode = WAL');
  return { name: 'drizzle-orm/better-sqlite3', db: drizzleBetter({ client: sqlite, schema }) as unknown as AnyDb, close: async () => void sqlite.close() };
}

const SYNCHRONOUS = ['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const;

/** The connection's `PRAGMA synchronous` level (OFF, NORMAL, FULL, EXTRA). */
export async function synchronousOf(db: AnyDb): Promise<(typeof SYNCHRONOUS)[number]> {
  const [row] = await db.all<{ synchronous: number }>(sql.raw('PRAGMA synchronous'));
  return SYNCHRONOUS[row!.synchronous]!;
}

/** Copies a database file (with no -wal beside it) to `to`, removing leftovers of an earlier copy. */
export async function copyDb(from: string, to: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm', '.sync.json']) await rm(`${to}${suffix}`, { force: true });
  await copyFile(from, to);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
