import { open, type FileHandle } from 'node:fs/promises';
import { readSchemaPosition, type SchemaPosition } from '../schema-position.ts';
import { pathToFileURL } from 'node:url';
import { SyncError } from '../../errors.ts';

/**
 * Reads a consistent image of a live WAL-mode database, chunk by chunk, inside one read transaction
 * (writers continue). Most pages are read straight from the file, which is as fast as the disk: while
 * our read transaction is open no checkpoint may copy a frame newer than our snapshot into the file,
 * so a page that has no frame in the WAL is, in the file, exactly as our snapshot sees it. Pages that
 * do have frames in the WAL (a superset is fine) are read through `sqlite_dbpage` in the transaction.
 * Runs in a worker thread.
 */
export interface PageImage {
  pageSize: number;
  pageCount: number;
  bytes: number;
  /** Chunks in the image. */
  chunkCount: number;
  chunks(): AsyncGenerator<{ index: number; data: Buffer }>;
  /** One chunk, read on its own (a snapshot that follows the change reads only the chunks it touched). */
  chunk(index: number): Promise<Buffer>;
  /** Where the database stands in drizzle's migration history, as the read transaction sees it. */
  schemaPosition(table: string): Promise<SchemaPosition>;
  /** These pages (1-based, ascending), as the read transaction sees them, end to end (into `into` when given); page 1 in canonical form. */
  pages(pgnos: Uint32Array, into?: Buffer): Promise<Buffer>;
  /**
   * Ends the read transaction. `fold` (the default) then folds the WAL back off the app's thread; a
   * snapshot that keeps the page record passes false: its folds are the checkpointer's, pinned at what
   * the record has read (src/sync/wal). (A second connection here, to fold under this image's own read
   * transaction, left descriptors open in the pool's workers past the database's close.)
   */
  close(options?: { fold?: boolean }): Promise<void>;
}

type LibsqlModule = typeof import('@libsql/client/sqlite3');

/** Pages asked of sqlite_dbpage in one statement. */
const PAGES_PER_QUERY = 1024;

export async function openPageImage(libsql: Promise<LibsqlModule>, dbPath: string, chunkSize: number): Promise<PageImage> {
  const client = (await libsql).createClient({ url: pathToFileURL(dbPath).href });
  const tx = await client.transaction('read');
  // Opened on the first chunk read: a delta reads its pages through sqlite_dbpage only.
  let opened: Promise<{ file: FileHandle; bytes: number }> | undefined;
  const file = () =>
    (opened ??= open(dbPath, 'r').then(async (handle) => {
      try {
        return { file: handle, bytes: (await handle.stat()).size };
      } catch (error) {
        await handle.close();
        throw error;
      }
    }));
  const close = async ({ fold = true }: { fold?: boolean } = {}) => {
    tx.close();
    await opened?.then(({ file }) => file.close(), () => undefined);
    try {
      // Fold the WAL back off the app's thread, as the full snapshot does.
      if (fold) await client.execute('PRAGMA wal_checkpoint(PASSIVE)');
    } finally {
      client.close();
    }
  };
  try {
    // The first read fixes the transaction's snapshot; everything after sees that point in time.
    const pageSize = Number((await tx.execute('PRAGMA page_size')).rows[0]![0]);
    const pageCount = Number((await tx.execute('PRAGMA page_count')).rows[0]![0]);
    // Only a read from the file needs it (a delta reads its pages through sqlite_dbpage, see pages()).
    let inWalRead: Promise<Set<number>> | undefined;
    const walSet = () => (inWalRead ??= walPages(`${dbPath}-wal`));
    const pagesPerChunk = Math.max(1, Math.floor(chunkSize / pageSize));

    const chunkCount = Math.ceil(pageCount / pagesPerChunk);

    async function chunk(index: number): Promise<Buffer> {
      const inWal = await walSet();
      const { file: handle, bytes: fileBytes } = await file();
      const first = 1 + index * pagesPerChunk;
      const last = Math.min(first + pagesPerChunk - 1, pageCount);
      const data = Buffer.alloc((last - first + 1) * pageSize);
      const offset = (first - 1) * pageSize;
      const inFile = Math.max(0, Math.min(data.length, fileBytes - offset));
      const { bytesRead } = inFile > 0 ? await handle.read(data, 0, inFile, offset) : { bytesRead: 0 };
      if (bytesRead !== inFile) throw new Error(`short read at page ${first} of ${dbPath}`);
      // Pages the WAL may hold newer (or the file does not have yet), through sqlite_dbpage in batches.
      const newer: number[] = [];
      for (let p = first; p <= last; p++) if (inWal.has(p) || (p - first + 1) * pageSize > inFile) newer.push(p);
      if (newer.length > 0) {
        const read = await pages(Uint32Array.from(newer));
        newer.forEach((p, i) => read.copy(data, (p - first) * pageSize, i * pageSize, (i + 1) * pageSize));
      }
      if (index === 0) canonicalizeHeaderBytes(data);
      return data;
    }

    async function pages(pgnos: Uint32Array, into?: Buffer): Promise<Buffer> {
      const data = into ?? Buffer.allocUnsafe(pgnos.length * pageSize);
      if (data.length !== pgnos.length * pageSize) throw new Error(`room for ${data.length} bytes, not ${pgnos.length} pages of ${pageSize}`);
      // A few statements in all (an IN over json_each is planned as one lookup per page), not one per
      // page: at 1000 pages 14 ms against 59 ms.
      for (let from = 0; from < pgnos.length; from += PAGES_PER_QUERY) {
        const batch = Array.from(pgnos.subarray(from, from + PAGES_PER_QUERY));
        for (const p of batch) if (p < 1 || p > pageCount) throw new Error(`page ${p} is outside ${dbPath}'s ${pageCount} pages`);
        const rows = (await tx.execute({ sql: 'SELECT pgno, data FROM sqlite_dbpage WHERE pgno IN (SELECT value FROM json_each(?)) ORDER BY pgno', args: [JSON.stringify(batch)] })).rows;
        if (rows.length !== batch.length) throw new Error(`${batch.length - rows.length} of the pages asked for are missing from ${dbPath}'s sqlite_dbpage`);
        rows.forEach((row, i) => {
          if (Number(row[0]) !== batch[i]) throw new Error(`sqlite_dbpage of ${dbPath} answered page ${Number(row[0])} for page ${batch[i]}`);
          data.set(new Uint8Array(row[1] as ArrayBuffer), (from + i) * pageSize);
        });
      }
      if (pgnos[0] === 1) canonicalizeHeaderBytes(data.subarray(0, pageSize));
      return data;
    }

    async function* chunks(): AsyncGenerator<{ index: number; data: Buffer }> {
      for (let index = 0; index < chunkCount; index++) yield { index, data: await chunk(index) };
    }
    const schemaPosition = (table: string) => readSchemaPosition((sql, args) => tx.execute({ sql, args: args ?? [] }), table);
    return { pageSize, pageCount, bytes: pageCount * pageSize, chunkCount, chunks, chunk, pages, schemaPosition, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

/** Page numbers of every frame header in the WAL file (all generations: a superset is safe). Reads headers only. */
async function walPages(walPath: string): Promise<Set<number>> {
  const pages = new Set<number>();
  let wal;
  try {
    wal = await open(walPath, 'r');
  } catch {
    return pages; // no WAL: every page is in the file
  }
  try {
    const size = (await wal.stat()).size;
    const header = Buffer.alloc(32);
    if (size < 32 || (await wal.read(header, 0, 32, 0)).bytesRead < 32) return pages;
    const frameBytes = 24 + (header.readUInt32BE(8) || 65536);
    // Frame headers in reads of up to 4 MiB of frames (a read per header was 200 ms for a few thousand frames).
    const framesPerRead = Math.max(1, Math.floor((4 << 20) / frameBytes));
    const buffer = Buffer.alloc(Math.min(framesPerRead, Math.ceil((size - 32) / frameBytes)) * frameBytes);
    for (let at = 32; at + 24 <= size; at += framesPerRead * frameBytes) {
      const { bytesRead } = await wal.read(buffer, 0, buffer.length, at);
      for (let f = 0; f * frameBytes + 24 <= bytesRead; f++) pages.add(buffer.readUInt32BE(f * frameBytes));
    }
    return pages;
  } finally {
    await wal.close();
  }
}

/** canonicalizeHeaderBytes on a database file's header, in place (a VACUUM INTO copy, a replica's file copied for a catch-up). */
export async function canonicalizeFileHeader(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const header = Buffer.alloc(100);
    if ((await file.read(header, 0, 100, 0)).bytesRead < 100) throw new SyncError('SNAPSHOT_CORRUPT', `${path} is too short to be a database.`);
    canonicalizeHeaderBytes(header);
    await file.write(header, 0, 100, 0);
  } finally {
    await file.close();
  }
}

/**
 * A copy of a database carries bookkeeping fields that change without any change of content (WAL
 * flags, the file change counter, the schema cookie). Fixing them makes a snapshot a pure function of
 * the database's content, so an unchanged database hashes the same and is never uploaded twice. A
 * restored file has no connection that cached the old values, so any constant is safe.
 */
export function canonicalizeHeaderBytes(page1: Buffer): void {
  page1.writeUInt8(1, 18); // file format write version: legacy (the app's connection switches to WAL)
  page1.writeUInt8(1, 19); // read version
  page1.writeUInt32BE(1, 24); // file change counter ...
  page1.writeUInt32BE(1, 92); // ... equal to version-valid-for, so the in-header page count stays valid
  page1.writeUInt32BE(1, 40); // schema cookie
}
