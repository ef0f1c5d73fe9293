/**
 * SQLite's WAL and WAL-index (-shm) formats, as far as page tracking needs them: which pages the
 * committed frames of a WAL generation hold. Pure functions over bytes.
 *
 * References: https://www.sqlite.org/fileformat2.html#walformat (the WAL file, big-endian) and
 * https://www.sqlite.org/walformat.html (the -shm index header, native byte order, two copies).
 */

export const WAL_HEADER_BYTES = 32;
export const FRAME_HEADER_BYTES = 24;
/** The WAL-index header: two 48-byte copies of WalIndexHdr, then WalCkptInfo (nBackfill at 96). */
export const SHM_HEADER_BYTES = 136;

const WAL_MAGIC_LE = 0x377f0682;
const WAL_MAGIC_BE = 0x377f0683;

/** The WAL-index header: what SQLite itself trusts about the WAL (committed frames only). */
export interface WalIndexState {
  pageSize: number;
  /** Frames of the current generation up to the last commit; 0 right after a restart. */
  mxFrame: number;
  /** Frames of them folded into the database file. */
  nBackfill: number;
  /** The generation's salts, as the 8 bytes the WAL header and every frame header carry. */
  salt: Buffer;
}

/**
 * Reads the -shm header. 'torn' when its two copies differ (a writer is updating it; SQLite's own
 * readers retry the same way); 'empty' when it is not initialised (no connection has built the index:
 * with one of ours reading the database, that means the WAL holds no frame).
 */
export function parseWalIndexHeader(header: Buffer, littleEndian: boolean): WalIndexState | 'torn' | 'empty' {
  if (header.length < SHM_HEADER_BYTES) return 'empty';
  if (!header.subarray(0, 48).equals(header.subarray(48, 96))) return 'torn';
  const u32 = (offset: number) => (littleEndian ? header.readUInt32LE(offset) : header.readUInt32BE(offset));
  const u16 = (offset: number) => (littleEndian ? header.readUInt16LE(offset) : header.readUInt16BE(offset));
  if (header[12] === 0) return 'empty'; // isInit
  const field = u16(14);
  const pageSize = field === 1 ? 65536 : field;
  if (pageSize < 512) return 'empty';
  return { pageSize, mxFrame: u32(16), nBackfill: u32(96), salt: Buffer.from(header.subarray(32, 40)) };
}

export interface WalFileHeader {
  pageSize: number;
  checkpointSeq: number;
  salt: Buffer;
}

/** The WAL file's 32-byte header; null when the file is empty or holds no WAL header. */
export function parseWalFileHeader(header: Buffer): WalFileHeader | null {
  if (header.length < WAL_HEADER_BYTES) return null;
  const magic = header.readUInt32BE(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return null;
  const field = header.readUInt32BE(8);
  return { pageSize: field === 1 ? 65536 : field, checkpointSeq: header.readUInt32BE(12), salt: Buffer.from(header.subarray(16, 24)) };
}

/** Byte offset of frame `frame` (1-based) in the WAL file. */
export function frameOffset(frame: number, pageSize: number): number {
  return WAL_HEADER_BYTES + (frame - 1) * (FRAME_HEADER_BYTES + pageSize);
}

export interface FrameHeader {
  pgno: number;
  /** For a commit frame, the database size in pages after the commit; 0 otherwise. */
  commitPages: number;
  salt: Buffer;
}

export function parseFrameHeader(bytes: Buffer, offset = 0): FrameHeader {
  return { pgno: bytes.readUInt32BE(offset), commitPages: bytes.readUInt32BE(offset + 4), salt: bytes.subarray(offset + 8, offset + 16) };
}

/**
 * Whether `next` is the generation SQLite starts when it restarts the WAL after `previous`: salt-1
 * incremented by one (salt-2 is random). Two restarts in a row look like anything else.
 */
export function isNextGeneration(previous: Buffer, next: Buffer): boolean {
  if (previous.length < 4 || next.length < 4) return false;
  return ((previous.readUInt32BE(0) + 1) >>> 0) === next.readUInt32BE(0);
}
