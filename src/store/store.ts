/**
 * The one interface between the sync core and a storage backend (Azure Blob, a local directory).
 * Keys are relative to the store's own prefix and use `/` separators. The core never sees SDK types:
 * implementations translate their failures into `SyncError`s (`STORE_UNREACHABLE`, `STORE_AUTH`,
 * `STORE_NOT_FOUND`, `NOT_FOUND`, `CONFLICT`) with `transient` set when a retry may help.
 */
export interface StoredObject {
  key: string;
  size: number;
  lastModified: Date;
}

export interface SmallObject {
  body: Buffer;
  etag: string;
  /** True while someone holds an unexpired lease on the object (the writer lease on the manifest). */
  leased: boolean;
}

/**
 * `ifMatch`: replace only if the current ETag is this one. `ifNoneMatch: '*'`: create only if absent.
 * `leaseId`: the write must carry the object's active lease (storage-enforced fencing); a write to a
 * leased object without it fails `LEASE_HELD`, with a lease that is no longer current `LEASE_LOST`.
 */
export type WriteCondition = ({ ifMatch: string } | { ifNoneMatch: '*' }) & { leaseId?: string };

export interface UploadOptions {
  onProgress?: (bytesSent: number) => void;
}

/** Objects only: what reading and writing snapshots needs (the CLI, restores, the snapshotter). */
export interface ObjectStore {
  /** Human-readable location for logs and error messages (never contains secrets). */
  readonly location: string;

  /** Resolution of the store's last-modified times in ms (Azure: 1000). Conditional deletes allow for it. Default 1000. */
  readonly timeResolutionMs?: number;

  /** Checks that the store exists and that we may read and write it. Throws a typed error naming the fix. */
  probe(): Promise<void>;

  /**
   * Loads now what later operations need and start-up did not (the Azure store behind a proxy: its
   * SDK, ~120 ms on this thread), so that pause does not land inside a snapshot or a lease renewal.
   * Called once, at the first idle moment after a writer has started. Optional; synchronous by nature.
   */
  prepare?(): void;

  /** Reads a small object (the manifest). Resolves null when it does not exist. */
  readSmall(key: string): Promise<SmallObject | null>;

  /** Conditionally writes a small object; throws `CONFLICT` when the condition does not hold. */
  writeSmall(key: string, body: Buffer, condition: WriteCondition): Promise<{ etag: string }>;

  /** Uploads a small in-memory object (a chunk, an index) unconditionally. */
  uploadBuffer(key: string, body: Buffer): Promise<void>;

  /**
   * Uploads a local file as an immutable object; metadata values are plain ASCII strings. `onProgress`,
   * if given, is called with the bytes sent so far (a store may call it only once, at the end).
   */
  uploadFile(key: string, filePath: string, metadata?: Record<string, string>, options?: UploadOptions): Promise<void>;

  /**
   * Streams an object's bytes in order (implementations may fetch ranges in parallel underneath, with
   * memory bounded by their concurrency, not by the object's size). Throws `NOT_FOUND` when absent.
   */
  download(key: string): AsyncIterable<Buffer>;

  /** Downloads an object to a local file (created or truncated). Throws `NOT_FOUND` when absent. */
  downloadToFile(key: string, filePath: string): Promise<{ bytes: number }>;

  /**
   * Deletes an object; deleting a missing object is not an error. With `ifUnmodifiedSince`, an object
   * written after that time is kept and the call throws `CONFLICT` (a chunk uploaded again meanwhile).
   */
  delete(key: string, condition?: { ifUnmodifiedSince: Date }): Promise<void>;

  /** Lists objects whose key starts with `prefix`. */
  list(prefix: string): Promise<StoredObject[]>;
}

/**
 * Exclusive leases on an object of the same store (the writer lease on the manifest), kept apart from
 * the object operations as Litestream keeps `Leaser` apart from `ReplicaClient`: reading and writing
 * objects (the CLI, a restore drill, retries) never needs them, and lease calls are never retried
 * blindly (`WriterLease` decides what a failed renewal means). Both built-in stores implement both.
 */
export interface Leaser {
  /** Human-readable location for logs and error messages (never contains secrets). */
  readonly location: string;

  /**
   * Takes (or, with the same id, re-takes) an exclusive lease on an existing object for `durationSec`
   * (15-60). Throws `LEASE_HELD` while another id holds an unexpired lease, `NOT_FOUND` if absent.
   * Resolves with the object's ETag as the grant found it, when the store reports one (both built-in
   * stores do): a start-up that read the object just before may then skip reading it again.
   */
  acquireLease(key: string, leaseId: string, durationSec: number): Promise<LeaseGrant | void>;

  /** Extends our lease; throws `LEASE_LOST` when it is no longer ours (broken, or expired and taken). */
  renewLease(key: string, leaseId: string): Promise<void>;

  /** Gives the lease up so another instance can take it at once; releasing a lease we lost is not an error. */
  releaseLease(key: string, leaseId: string): Promise<void>;
}

/**
 * What a granted lease saw. `etag`: the leased object's ETag at the grant. A lease changes no ETag, and
 * while the lease is held no one else can change the object, so a read that returned this ETag is current.
 */
export interface LeaseGrant {
  etag?: string;
}

/** What `drizzle()` takes as `store`: objects and the writer lease. Both built-in stores are one. */
export type SnapshotStore = ObjectStore & Leaser;
