export { drizzle, type DrizzleBlobConfig, type BlobDatabase } from './drizzle.ts';
export { directoryStore, type DirectoryStoreOptions } from './store/directory-store.ts';
export { storeFromEnv } from './store/from-env.ts';
export type { SnapshotStore, ObjectStore, Leaser, StoredObject, SmallObject, WriteCondition } from './store/store.ts';
export { SyncError, isSyncError, hasSyncError, findSyncError, type SyncErrorCode } from './errors.ts';
export type { SyncHandle, SyncStatus, SyncEvents } from './sync/sync-controller.ts';
export type { SnapshotInfo } from './sync/snapshotter.ts';
export type { SnapshotOptions, ShutdownOptions } from './config.ts';
export type { RestoreMode, VerifiedSnapshot } from './sync/restore.ts';
export type { Codec } from './sync/codec.ts';
export type { SyncLogger } from './log.ts';
export { SyncMetrics, metricAttributes, METRIC, type SyncMetricsOptions } from './telemetry/metrics.ts';
export type { RestoreTarget } from './sync/manifest.ts';
export type { Role, LeaseOptions, ReplicaOptions, RestoreVerify } from './config.ts';
export type { RestoredFrom, RestoreEvent, RestoreCheckEvent } from './sync/sync-controller.ts';
export type { EncryptionOptions, KeyProvider } from './sync/chunks/encryption.ts';

import { azureBlobStore as makeAzureBlobStore, type AzureBlobStoreOptions } from './store/azure-blob-store.ts';
import type { SnapshotStore } from './store/store.ts';
import { warmWorkers } from './sync/run-in-worker.ts';

/**
 * A store on Azure Blob Storage (or Azurite). Making one loads the Azure SDK on this thread (~120 ms),
 * and a restore or a snapshot nearly always follows: the file worker they use boots meanwhile on
 * another core (~45 ms of CPU that was on a cold start's critical path), instead of when drizzle() starts.
 */
export function azureBlobStore(options: AzureBlobStoreOptions): SnapshotStore {
  warmWorkers(1);
  return makeAzureBlobStore(options);
}
export type { AzureBlobStoreOptions, ConnectionStringOptions, AccountUrlOptions, ContainerUrlOptions } from './store/azure-blob-store.ts';

