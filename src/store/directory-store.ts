import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { assertKnownKeys, describe, keysOf } from '../config-keys.ts';
import { SyncError } from '../errors.ts';
import type { SmallObject, SnapshotStore, StoredObject, UploadOptions, WriteCondition } from './store.ts';

export interface DirectoryStoreOptions {
  /** Folder that plays the role of the blob container (created if missing). */
  dir: string;
  /** Optional sub-folder, like a blob prefix. */
  prefix?: string;
}

const DIRECTORY_STORE_OPTION_KEYS = keysOf<DirectoryStoreOptions>({ dir: true, prefix: true });

const LOCK_STALE_MS = 10_000;

function etagOf(body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`;
}

function fsError(error: unknown, what: string): SyncError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new SyncError('STORE_AUTH', `Cannot ${what}: permission denied (${code}); make the backup directory writable by this process.`, { cause: error });
  }
  return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: ${(error as Error).message}`, { cause: error, transient: true });
}

/** A store in a local folder: for development and tests, same semantics as the blob store. */
export function directoryStore(options: DirectoryStoreOptions): SnapshotStore {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new SyncError('CONFIG', 'directoryStore({ dir }) takes an options object with `dir`, the folder to keep backups in (for example "./.data/backups").');
  }
  assertKnownKeys(options, DIRECTORY_STORE_OPTION_KEYS, '', 'directoryStore: ');
  if (typeof options.dir !== 'string' || options.dir.trim() === '') {
    throw new SyncError('CONFIG', 'directoryStore({ dir }) needs `dir`, the folder to keep backups in (for example "./.data/backups").');
  }
  if (options.prefix !== undefined && typeof options.prefix !== 'string') {
    throw new SyncError('CONFIG', `directoryStore: prefix must be a string such as "prod/app1"; got ${describe(options.prefix)}.`);
  }
  const root = resolve(options.dir, options.prefix ?? '');
  const pathOf = (key: string) => {
    const path = resolve(root, key);
    if (!path.startsWith(root + sep)) throw new SyncError('CONFIG', `Store key ${JSON.stringify(key)} escapes the backup directory.`);
    return path;
  };

  /** Cross-process mutual exclusion for conditional writes: an O_EXCL lock file. */
  async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const lockPath = `${pathOf(key)}.lock`;
    await mkdir(dirname(lockPath), { recursive: true });
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(lockPath, 'wx');
        await handle.close();
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(error, `lock ${lockPath}`);
        const age = await stat(lockPath).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > LOCK_STALE_MS) await rm(lockPath, { force: true }); // left by a killed process
        await delay(Math.min(5 * 2 ** attempt, 100));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lockPath, { force: true });
    }
  }

  async function atomicWrite(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await write(tmp);
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }

  // Leases are emulated with a `<key>.lease` file ({ leaseId, expiresAt }) read and written under the
  // key's lock, with Azure's rules: an expired lease may be re-taken by anyone, renewed by its holder
  // only while nobody else took it.
  interface LeaseFile {
    leaseId: string;
    expiresAt: number;
    durationMs: number;
  }
  const leasePath = (key: string) => `${pathOf(key)}.lease`;
  async function readLease(key: string): Promise<LeaseFile | null> {
    try {
      return JSON.parse(await readFile(leasePath(key), 'utf8')) as LeaseFile;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fsError(error, `read lease ${leasePath(key)}`);
    }
  }
  const activeLease = (lease: LeaseFile | null) => (lease && lease.expiresAt > Date.now() ? lease : null);
  async function writeLease(key: string, lease: LeaseFile): Promise<void> {
    await atomicWrite(leasePath(key), (tmp) => writeFile(tmp, JSON.stringify(lease)));
  }
  function checkWriteLease(key: string, lease: LeaseFile | null, leaseId: string | undefined): void {
    const active = activeLease(lease);
    if (active && leaseId === undefined) throw new SyncError('LEASE_HELD', `${key} in ${root} is leased by another writer.`);
    if (leaseId !== undefined && active?.leaseId !== leaseId) throw new SyncError('LEASE_LOST', `The lease on ${key} in ${root} is no longer held by this writer.`);
  }

  async function readSmall(key: string): Promise<SmallObject | null> {
    try {
      const body = await readFile(pathOf(key));
      return { body, etag: etagOf(body), leased: activeLease(await readLease(key)) !== null };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fsError(error, `read ${pathOf(key)}`);
    }
  }

  return {
    location: `file://${root}`,
    timeResolutionMs: 1,

    async probe() {
      try {
        await mkdir(root, { recursive: true });
        const probe = join(root, `.probe-${randomBytes(4).toString('hex')}`);
        await writeFile(probe, '');
        await rm(probe, { force: true });
      } catch (error) {
        throw fsError(error, `use backup directory ${root}`);
      }
    },

    readSmall,

    async writeSmall(key: string, body: Buffer, condition: WriteCondition) {
      return withLock(key, async () => {
        const current = await readSmall(key);
        checkWriteLease(key, await readLease(key), condition.leaseId);
        if ('ifMatch' in condition ? current?.etag !== condition.ifMatch : current !== null) {
          throw new SyncError('CONFLICT', `${key} in ${root} changed since it was read (another writer published).`);
        }
        await atomicWrite(pathOf(key), (tmp) => writeFile(tmp, body, { flush: true }));
        return { etag: etagOf(body) };
      });
    },

    async acquireLease(key: string, leaseId: string, durationSec: number) {
      return withLock(key, async () => {
        const current = await readSmall(key);
        if (current === null) throw new SyncError('NOT_FOUND', `${key} does not exist in ${root}; nothing to lease.`);
        const active = activeLease(await readLease(key));
        if (active && active.leaseId !== leaseId) throw new SyncError('LEASE_HELD', `${key} in ${root} is leased by another writer.`);
        await writeLease(key, { leaseId, expiresAt: Date.now() + durationSec * 1000, durationMs: durationSec * 1000 });
        return { etag: current.etag }; // under the key's lock: no write came between
      });
    },

    async renewLease(key: string, leaseId: string) {
      return withLock(key, async () => {
        const lease = await readLease(key);
        if (lease?.leaseId !== leaseId) throw new SyncError('LEASE_LOST', `The lease on ${key} in ${root} is no longer held by this writer.`);
        await writeLease(key, { ...lease, expiresAt: Date.now() + lease.durationMs });
      });
    },

    async releaseLease(key: string, leaseId: string) {
      return withLock(key, async () => {
        if ((await readLease(key))?.leaseId === leaseId) await rm(leasePath(key), { force: true });
      });
    },

    async uploadBuffer(key: string, body: Buffer) {
      try {
        await atomicWrite(pathOf(key), (tmp) => writeFile(tmp, body));
      } catch (error) {
        throw fsError(error, `write ${key} into ${root}`);
      }
    },

    async uploadFile(key: string, filePath: string, _metadata?: Record<string, string>, options?: UploadOptions) {
      try {
        await atomicWrite(pathOf(key), (tmp) => copyFile(filePath, tmp));
        // A local copy is one step: its progress is reported once, when it is done.
        if (options?.onProgress) options.onProgress((await stat(filePath)).size);
      } catch (error) {
        throw fsError(error, `copy ${filePath} into ${root}`);
      }
    },

    async *download(key: string) {
      try {
        for await (const chunk of createReadStream(pathOf(key), { highWaterMark: 8 * 1024 * 1024 })) yield chunk as Buffer;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new SyncError('NOT_FOUND', `${key} does not exist in ${root}.`, { cause: error });
        throw fsError(error, `read ${key} in ${root}`);
      }
    },

    async downloadToFile(key: string, filePath: string) {
      try {
        await copyFile(pathOf(key), filePath);
        return { bytes: (await stat(filePath)).size };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new SyncError('NOT_FOUND', `${key} does not exist in ${root}.`, { cause: error });
        throw fsError(error, `copy ${key} out of ${root}`);
      }
    },

    async delete(key: string, condition?: { ifUnmodifiedSince: Date }) {
      if (condition) {
        const modified = await stat(pathOf(key)).then((st) => st.mtimeMs, () => undefined);
        if (modified !== undefined && modified > condition.ifUnmodifiedSince.getTime()) {
          throw new SyncError('CONFLICT', `${key} in ${root} was written again after ${condition.ifUnmodifiedSince.toISOString()}; not deleted.`);
        }
      }
      await rm(pathOf(key), { force: true });
    },

    async list(prefix: string) {
      const out: StoredObject[] = [];
      const walk = async (dir: string): Promise<void> => {
        let entries;
        try {
          entries = await readdir(dir, { withFileTypes: true });
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
          throw fsError(error, `list ${dir}`);
        }
        for (const entry of entries) {
          const full = join(dir, entry.name);
          if (entry.isDirectory()) await walk(full);
          else if (!entry.name.endsWith('.tmp') && !entry.name.endsWith('.lock') && !entry.name.endsWith('.lease')) {
            const key = relative(root, full).split(sep).join('/');
            if (key.startsWith(prefix)) {
              const s = await stat(full);
              out.push({ key, size: s.size, lastModified: s.mtime });
            }
          }
        }
      };
      await walk(root);
      return out.sort((a, b) => a.key.localeCompare(b.key));
    },
  };
}
