import { isNextGeneration } from './wal-format.ts';

/**
 * Which pages changed since the last upload, learnt from the WAL's frame headers (issue 14: an upload
 * that follows the change reads and ships only these pages).
 *
 * The WAL holds every page a commit wrote until a checkpoint folds it into the file and the next commit
 * restarts the WAL from its start, overwriting the old frames. So frames are read (their page numbers:
 * `scanWal`) before any checkpoint that could let the WAL restart: every checkpoint of ours is bounded
 * by a reader pinned at a frame already read, and SQLite restarts the WAL only once every frame is
 * folded. What is read here must then be the whole story of the file since the upload; anything that
 * breaks the chain (a restart no scan saw coming, another process's checkpoint, a WAL replaced) marks
 * the record lost, and the next upload reads the whole file instead (the chunk snapshot).
 *
 * Positions: frames are counted across generations (`base` + frame), so "changed after the upload at
 * position P" is one comparison whatever restarts came between. Pure state, no I/O: the scans come in
 * from workers (`ScanResult`), one at a time.
 */

/** Where the record stands in the WAL: its generation (salts), the last frame read, and how it was left. */
export interface WalCursor {
  /** The generation's 8 salt bytes, hex. */
  salt: string;
  /** Frames of this generation read so far. */
  frame: number;
  /** Position of this generation's frame 0 across generations. */
  base: number;
  /**
   * A checkpoint of ours folded every frame of this generation up to `frame` (nBackfill = mxFrame =
   * frame): the next commit may restart the WAL, and a next generation is then expected.
   */
  folded: boolean;
  /**
   * Set while no frame of the cursor's generation has been read and none was folded since the record
   * began: the database file's size and modification time then. See scanVerdict's fresh-WAL case.
   */
  fileStamp?: string;
}

/** What one scan read: frames (from, to] of one generation, and the last frame of each page among them. */
export interface ScanResult {
  salt: string;
  /** The frame the scan started after: 0 for a new generation, or the cursor frame it was given. */
  from: number;
  to: number;
  /** [pgno, frame] for each page written in (from, to], the frame being its last one there. */
  pages: Array<[number, number]>;
  /** After the scan, a checkpoint of ours folded every frame up to `to`, and `to` was the WAL's end. */
  folded?: boolean;
  /** The WAL could not be read as its index describes it (why): the record is lost. */
  broken?: string;
  /** The WAL file header's checkpoint sequence, when frames were read: 0 until a connection restarted the WAL. */
  checkpointSeq?: number;
  /** The database file's size and modification time, taken under the pin before any checkpoint of the scan's op. */
  fileStamp?: string;
}

export type ScanVerdict = { kind: 'apply' } | { kind: 'lost'; why: string };

/**
 * How a scan relates to the cursor (pure). Scans are serialized (one worker op at a time reads the WAL,
 * see WalScans), so each starts where the cursor is: 'apply' when it continues the same generation, or
 * starts the generation SQLite opens after one we folded completely; 'lost' whenever frames may have
 * been missed.
 */
export function scanVerdict(cursor: WalCursor, scan: ScanResult): ScanVerdict {
  if (scan.broken) return { kind: 'lost', why: scan.broken };
  if (scan.salt === cursor.salt) {
    if (scan.from !== cursor.frame) return { kind: 'lost', why: `the scan started at frame ${scan.from}, the record at ${cursor.frame}` };
    if (scan.to < scan.from) return { kind: 'lost', why: `the WAL has ${scan.to} frames, fewer than the ${scan.from} already read` };
    return { kind: 'apply' };
  }
  if (scan.from === 0 && isNextGeneration(Buffer.from(cursor.salt, 'hex'), Buffer.from(scan.salt, 'hex'))) {
    if (cursor.folded) return { kind: 'apply' };
    return { kind: 'lost', why: 'the WAL restarted before every frame of its previous generation was read (another connection checkpointed it)' };
  }
  // An empty WAL gets fresh random salts from the first connection that writes a frame into it without
  // having restarted a WAL before (checkpoint sequence 0): the app's first commit after the record
  // began on an empty WAL. The WAL was then empty when that frame was written; frames of the old
  // generation written and emptied meanwhile (another connection's TRUNCATE) would have been folded
  // into the database file, and its size and modification time would differ from the record's start.
  if (scan.from === 0 && cursor.frame === 0 && scan.checkpointSeq === 0 && cursor.fileStamp !== undefined && scan.fileStamp === cursor.fileStamp) {
    return { kind: 'apply' };
  }
  return { kind: 'lost', why: 'the WAL is not the one read so far (replaced, reset, or restarted more than once outside this library)' };
}

export class ChangedPages {
  #cursor: WalCursor;
  /** pgno -> the position of its last change seen. */
  readonly #changed = new Map<number, number>();
  /** Set when the record broke: until a whole-file upload taken at or after `#lostAt`, no upload may rely on it. */
  #lost: string | undefined;
  #lostAt = 0;
  /** Pages changed since the baseline and carried by the deltas uploaded on top of it since. */
  readonly #inDeltas = new Set<number>();
  /**
   * The chunked snapshot the record's pages are changes against: the last one uploaded (or found
   * unchanged) from this file. An upload may keep the other chunks' addresses only against it.
   */
  baselineKey: string | undefined;
  /** The last restore point uploaded from this record (the baseline or a delta on it): what a next delta extends. */
  headKey: string | undefined;
  /** Pages the deltas since the last level-1 delta (or the baseline) carried: what the next level-1 delta carries again. */
  readonly #sinceLevel = new Set<number>();
  /** The last level-1 delta uploaded from this record, or the baseline: what a level-1 delta extends. */
  levelKey: string | undefined;
  /** Level-0 deltas uploaded since `levelKey`. */
  deltasSinceLevel = 0;
  /** Deltas uploaded on the baseline (retention may have dropped some of them from the manifest). */
  deltasSinceBaseline = 0;
  /** Uploads since the last one that read the whole file (a whole-file read every so often bounds any drift). */
  uploadsSinceWholeFile = 0;
  /**
   * While a compaction runs beside the deltas (Snapshotter): the position its chunk set holds the file
   * up to, and every page changed after it, whatever upload carried it since (what the delta that
   * publishes the chunk set must carry on top of it).
   */
  #watch: { from: number; pages: Set<number> } | undefined;

  /** Starts a record at `cursor`: the file's pages up to there are what the last upload holds. */
  constructor(cursor: WalCursor) {
    this.#cursor = { ...cursor };
  }

  get cursor(): Readonly<WalCursor> {
    return this.#cursor;
  }

  /** Why the record cannot be trusted (an upload must read the whole file), or undefined. */
  get lost(): string | undefined {
    return this.#lost;
  }

  /** Pages changed since the last upload. */
  get size(): number {
    return this.#changed.size;
  }

  /** Position (across generations) of the last frame read. */
  get position(): number {
    return this.#cursor.base + this.#cursor.frame;
  }

  /** Something that could have let the WAL restart unread happened (a checkpoint whose scan was lost). */
  markLost(why: string): void {
    if (this.#lost === undefined) this.#lost = why;
    this.#lostAt = Math.max(this.#lostAt, this.position);
  }

  /** Takes in one scan; returns the verdict. A lost record follows the WAL from here on (positions stay increasing). */
  apply(scan: ScanResult): ScanVerdict {
    const verdict = scanVerdict(this.#cursor, scan);
    // A scan that read nothing new keeps a fold already known at this frame: it may have looked at the
    // WAL index before that fold ended (a delta beside a checkpoint's fold) and be taken in after it.
    const stillFolded = verdict.kind === 'apply' && this.#cursor.folded && scan.salt === this.#cursor.salt && scan.to === this.#cursor.frame;
    const folded = (scan.folded ?? false) || stillFolded;
    if (verdict.kind === 'lost') {
      // Changes before this scan's frames are unknown; its own frames are real changes after the break,
      // recorded as usual, so a whole-file upload from after the break mends the record.
      const base = this.position + 1;
      this.#cursor = { salt: scan.salt, frame: scan.from, base, folded: false };
      if (this.#lost === undefined) this.#lost = verdict.why;
      this.#lostAt = Math.max(this.#lostAt, base + scan.from);
    } else if (scan.salt !== this.#cursor.salt) {
      this.#cursor = { salt: scan.salt, frame: 0, base: this.position, folded: false };
    }
    const base = this.#cursor.base;
    const { fileStamp, ...rest } = this.#cursor;
    // The fresh-WAL case holds only until a frame is read (or one of ours is folded).
    this.#cursor = scan.to === 0 && fileStamp !== undefined && scan.fileStamp === fileStamp ? this.#cursor : rest;
    for (const [pgno, frame] of scan.pages) {
      const at = base + frame;
      if ((this.#changed.get(pgno) ?? -1) < at) this.#changed.set(pgno, at);
      if (this.#watch && at > this.#watch.from) this.#watch.pages.add(pgno);
    }
    this.#cursor = { ...this.#cursor, frame: scan.to, folded };
    return verdict;
  }

  /**
   * The outcome of the fold a checkpoint of ours ran after `scan` (applied before it; the fold's outcome
   * comes later, see checkpoint-journal.ts): if it folded every frame up to the scan's end, that end was
   * the WAL's, and the record is still there, the WAL may restart at the next commit and the next scan
   * expects the next generation. Anywhere else (a delta read further meanwhile) it says nothing: frames
   * past the scan's end were not folded by it, so the WAL cannot have restarted on them.
   */
  noteFolded(scan: ScanResult, folded: boolean): void {
    if (folded && this.#cursor.salt === scan.salt && this.#cursor.frame === scan.to) this.#cursor = { ...this.#cursor, folded: true };
  }

  /** Every page changed up to position `upTo` (what an upload of the file as of `upTo` must carry), sorted. */
  pagesUpTo(upTo: number): number[] {
    const pages: number[] = [];
    for (const [pgno, at] of this.#changed) if (at <= upTo) pages.push(pgno);
    return pages.sort((a, b) => a - b);
  }

  /** Every page changed since the baseline (what a chunk set replacing it must read), sorted. */
  pagesSinceBaseline(): number[] {
    const pages = new Set(this.#inDeltas);
    for (const pgno of this.#changed.keys()) pages.add(pgno);
    return [...pages].sort((a, b) => a - b);
  }

  /**
   * A chunk set holding the file as of position `upTo` is in the store: the changes up to it are
   * forgotten, and so are those the deltas carried (the chunk set holds them). A whole-file upload also
   * mends a record that broke at or before `upTo`.
   */
  uploaded(upTo: number, wholeFile: boolean, baselineKey?: string): void {
    this.#watch = undefined;
    for (const [pgno, at] of this.#changed) if (at <= upTo) this.#changed.delete(pgno);
    this.#inDeltas.clear();
    this.#sinceLevel.clear();
    this.deltasSinceLevel = 0;
    this.deltasSinceBaseline = 0;
    if (wholeFile && this.#lost !== undefined && this.#lostAt <= upTo) this.#lost = undefined;
    this.uploadsSinceWholeFile = wholeFile ? 0 : this.uploadsSinceWholeFile + 1;
    if (baselineKey !== undefined) this.baselineKey = this.headKey = this.levelKey = baselineKey;
  }

  /** Pages the level-0 deltas since `levelKey` carried (what a level-1 delta carries again). */
  get sinceLevelSize(): number {
    return this.#sinceLevel.size;
  }

  /** What a level-1 delta carries: every page changed since `levelKey` (the level-0 deltas' and the new ones), sorted. */
  pagesSinceLevel(): number[] {
    const pages = new Set(this.#sinceLevel);
    for (const pgno of this.#changed.keys()) pages.add(pgno);
    return [...pages].sort((a, b) => a - b);
  }

  /**
   * A delta holding the file as of position `upTo` is in the store as `key`: its pages are the
   * baseline's changes now. Level 0 extends the head; level 1 extends `levelKey` (it carried every page
   * since), and becomes what the next level-1 delta extends.
   */
  deltaUploaded(upTo: number, key: string, level: 0 | 1 = 0): void {
    for (const [pgno, at] of this.#changed) {
      if (at > upTo) continue;
      this.#changed.delete(pgno);
      this.#inDeltas.add(pgno);
      if (level === 0) this.#sinceLevel.add(pgno);
    }
    this.headKey = key;
    this.deltasSinceBaseline++;
    if (level === 1) {
      this.#sinceLevel.clear();
      this.levelKey = key;
      this.deltasSinceLevel = 0;
    } else {
      this.deltasSinceLevel++;
    }
  }

  /** A compaction's chunk set holds the file up to position `from`: from here on, every page changed after it is watched. */
  watch(from: number): void {
    const pages = new Set<number>();
    for (const [pgno, at] of this.#changed) if (at > from) pages.add(pgno);
    this.#watch = { from, pages };
  }

  /** The compaction was dropped. */
  unwatch(): void {
    this.#watch = undefined;
  }

  /** Whether a compaction is watched, and from where. */
  get watchedFrom(): number | undefined {
    return this.#watch?.from;
  }

  /** What the delta that publishes the compaction's chunk set carries: every page changed since it, the watched ones and the pending ones, sorted. */
  pagesSinceWatch(): number[] {
    const pages = new Set(this.#watch?.pages);
    for (const pgno of this.#changed.keys()) pages.add(pgno);
    return [...pages].sort((a, b) => a - b);
  }

  /**
   * The compaction's chunk set `baselineKey` is published, with on top of it (unless nothing changed
   * since) the level-1 delta `bridgeKey` holding the file as of `upTo` (it carried the watched pages
   * and the pending ones): the record's baseline, head and level are now those.
   */
  compacted(upTo: number, wholeFile: boolean, baselineKey: string, bridgeKey: string | undefined): void {
    this.#inDeltas.clear();
    for (const pgno of this.#watch?.pages ?? []) this.#inDeltas.add(pgno);
    for (const [pgno, at] of this.#changed) {
      if (at > upTo) continue;
      this.#changed.delete(pgno);
      this.#inDeltas.add(pgno);
    }
    this.#watch = undefined;
    this.#sinceLevel.clear();
    this.deltasSinceLevel = 0;
    this.deltasSinceBaseline = bridgeKey === undefined ? 0 : 1;
    this.uploadsSinceWholeFile = wholeFile ? 0 : this.uploadsSinceWholeFile + 1;
    this.baselineKey = baselineKey;
    this.headKey = this.levelKey = bridgeKey ?? baselineKey;
  }
}
