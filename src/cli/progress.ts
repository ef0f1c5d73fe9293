/**
 * Transfer progress for long downloads and uploads: a thin wrapper over a `ObjectStore` that counts
 * the bytes flowing through `download()`, reported by `uploadFile()`'s `onProgress` (a full snapshot),
 * and sent by `uploadBuffer()` for `chunks/` (an incremental snapshot's new chunks, counted together),
 * printing throttled lines such as `seq 12: 45.0/120.3 MB (37%) 80.1 MB/s` and a final line per transfer.
 */
import { stat } from 'node:fs/promises';
import type { ObjectStore, UploadOptions } from '../store/store.ts';
import { CHUNK_PREFIX } from '../sync/chunks/chunk-index.ts';
import type { SnapshotEntry } from '../sync/manifest.ts';
import { formatDuration, formatMB } from './format.ts';

export interface TransferLabel {
  /** e.g. `seq 12` */
  label: string;
  /** Expected bytes of the object (the snapshot's compressed size). */
  total: number;
  /** The final line's verb. Default `downloaded`. */
  done?: string;
}

/** Transfers smaller than this finish too fast for progress lines to mean anything: they print none. */
export const MIN_BYTES = 1_000_000;

/** Throttled byte counter for one transfer: at most one line per `intervalMs`, plus the first and the last. */
export class ProgressMeter {
  #done = 0;
  #lastPrint = -Infinity;
  readonly #started: number;

  constructor(
    private readonly what: TransferLabel,
    private readonly print: (line: string) => void,
    private readonly intervalMs = 500,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#started = now();
  }

  add(bytes: number): void {
    this.#done += bytes;
    const t = this.now();
    if (t - this.#lastPrint < this.intervalMs) return;
    this.#lastPrint = t;
    const { label, total } = this.what;
    const pct = total > 0 ? ` (${Math.min(100, Math.floor((this.#done / total) * 100))}%)` : '';
    const elapsed = t - this.#started;
    // A rate from the first few milliseconds means nothing.
    const rate = elapsed >= 200 ? ` ${formatMB(this.#done / (elapsed / 1000))} MB/s` : '';
    this.print(`${label}: ${formatMB(this.#done)}/${formatMB(total)} MB${pct}${rate}`);
  }

  finish(): void {
    const elapsed = this.now() - this.#started;
    const rate = elapsed > 0 ? `, ${formatMB(this.#done / (elapsed / 1000))} MB/s` : '';
    this.print(`${this.what.label}: ${this.what.done ?? 'downloaded'} ${formatMB(this.#done)} MB in ${formatDuration(elapsed)}${rate}`);
  }
}

/** Snapshot keys carry their zero-padded sequence: `snapshots/<generation>/000000000012-<nonce>.db.lz4`. */
function uploadLabel(key: string): string {
  const seq = /(?:^|\/)(\d{12})-[^/]*$/.exec(key)?.[1];
  return seq === undefined ? key : `seq ${Number(seq)}`;
}

/**
 * `describe(key)` names the object being downloaded (undefined: count silently). A retried download
 * calls `download()` again and starts a fresh meter. `chunkTotal()`: the bytes of new chunks about to be
 * uploaded, asked at the first chunk upload (undefined: no chunk progress); the chunk uploads end at the
 * next other write (the chunk index, the manifest).
 */
export function withProgress<S extends ObjectStore>(
  store: S,
  describe: (key: string) => TransferLabel | undefined,
  print: (line: string) => void,
  intervalMs = 500,
  chunkTotal?: () => number | undefined,
): S {
  async function* download(key: string): AsyncIterable<Buffer> {
    const what = describe(key);
    const meter = what && what.total >= MIN_BYTES ? new ProgressMeter(what, print, intervalMs) : undefined;
    for await (const chunk of store.download(key)) {
      meter?.add(chunk.length);
      yield chunk;
    }
    meter?.finish();
  }

  async function uploadFile(key: string, filePath: string, metadata?: Record<string, string>, options?: UploadOptions): Promise<void> {
    const { size } = await stat(filePath);
    if (size < MIN_BYTES) return store.uploadFile(key, filePath, metadata, options);
    const what = { label: uploadLabel(key), total: size, done: 'uploaded' };
    let meter = new ProgressMeter(what, print, intervalMs);
    let sent = 0;
    const onProgress = (bytesSent: number) => {
      // The store reports a running total; a retried upload starts again from 0 with a fresh meter.
      if (bytesSent < sent) {
        meter = new ProgressMeter(what, print, intervalMs);
        sent = 0;
      }
      meter.add(bytesSent - sent);
      sent = bytesSent;
      options?.onProgress?.(bytesSent);
    };
    await store.uploadFile(key, filePath, metadata, { ...options, onProgress });
    if (sent < size) meter.add(size - sent); // a store that reports no progress of its own
    meter.finish();
  }

  // undefined: no chunk upload under way; null: under way, too small (or of unknown size) to show.
  let chunkMeter: ProgressMeter | null | undefined;
  const endChunks = () => {
    chunkMeter?.finish();
    chunkMeter = undefined;
  };

  async function uploadBuffer(key: string, body: Buffer): Promise<void> {
    if (chunkTotal === undefined || !key.startsWith(CHUNK_PREFIX)) {
      endChunks();
      return store.uploadBuffer(key, body);
    }
    if (chunkMeter === undefined) {
      const total = chunkTotal();
      chunkMeter = total !== undefined && total >= MIN_BYTES ? new ProgressMeter({ label: 'new chunks', total, done: 'uploaded' }, print, intervalMs) : null;
    }
    const meter = chunkMeter;
    await store.uploadBuffer(key, body);
    meter?.add(body.length);
  }

  async function writeSmall(...args: Parameters<ObjectStore['writeSmall']>): ReturnType<ObjectStore['writeSmall']> {
    endChunks();
    return store.writeSmall(...args);
  }

  // Everything else goes to the wrapped store untouched (bound, so class-based stores work too).
  return new Proxy(store, {
    get(target, property) {
      if (property === 'download') return download;
      if (property === 'uploadFile') return uploadFile;
      if (property === 'uploadBuffer') return uploadBuffer;
      if (property === 'writeSmall') return writeSmall;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** A meter for a chunked snapshot's downloads (they are many small objects, counted together); undefined when quiet or small. */
export function chunkProgress(ctx: { out: { quiet: boolean; progress(line: string): void } }, entry: SnapshotEntry): ProgressMeter | undefined {
  if (ctx.out.quiet || entry.kind !== 'chunks' || entry.compressedBytes < MIN_BYTES) return undefined;
  return new ProgressMeter({ label: `seq ${entry.seq}`, total: entry.compressedBytes }, (line) => ctx.out.progress(line));
}

/**
 * The context's store, with progress lines for these snapshots' downloads and for uploads (none with
 * --quiet). `chunkTotal`: see `withProgress`.
 */
export function progressStore<S extends ObjectStore>(
  ctx: { store: S; out: { quiet: boolean; progress(line: string): void } },
  entries: readonly SnapshotEntry[] = [],
  chunkTotal?: () => number | undefined,
): S {
  if (ctx.out.quiet) return ctx.store;
  const byKey = new Map(entries.map((e) => [e.key, { label: `seq ${e.seq}`, total: e.compressedBytes }]));
  return withProgress(ctx.store, (key) => byKey.get(key), (line) => ctx.out.progress(line), 500, chunkTotal);
}
