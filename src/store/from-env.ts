import { SyncError } from '../errors.ts';
import { configuredAzureBlobStore, type ConfigHints } from './azure-blob-store.ts';
import { directoryStore } from './directory-store.ts';
import type { SnapshotStore } from './store.ts';

type Env = Record<string, string | undefined>;

/** Errors from a store configured here name the variables to change, not `azureBlobStore()` options. */
const ENV_HINTS: ConfigHints = {
  setting: (option) =>
    option === 'connectionString' ? 'AZURE_STORAGE_CONNECTION_STRING' : option === 'containerUrl' ? 'AZURE_STORAGE_CONTAINER_URL' : 'AZURE_STORAGE_ACCOUNT_URL',
  createContainer: 'set AZURE_STORAGE_CREATE_CONTAINER=true to have it created on start',
  useIdentity: 'set AZURE_STORAGE_ACCOUNT_URL (or AZURE_STORAGE_ACCOUNT_NAME) for DefaultAzureCredential instead of AZURE_STORAGE_CONNECTION_STRING',
};

/** AZURE_STORAGE_CREATE_CONTAINER: true/1/yes or false/0/no (empty: unset); anything else is a CONFIG error rather than a guess. */
export function createsContainerFromEnv(env: Env = process.env): boolean {
  const value = env.AZURE_STORAGE_CREATE_CONTAINER?.trim().toLowerCase();
  if (value === undefined || value === '' || value === 'false' || value === '0' || value === 'no') return false;
  if (value === 'true' || value === '1' || value === 'yes') return true;
  throw new SyncError('CONFIG', `AZURE_STORAGE_CREATE_CONTAINER must be true or false; got ${JSON.stringify(env.AZURE_STORAGE_CREATE_CONTAINER)}.`);
}

/**
 * Picks the store from the environment, in this order:
 * AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_CONTAINER_URL (SAS), AZURE_STORAGE_ACCOUNT_URL or
 * AZURE_STORAGE_ACCOUNT_NAME (DefaultAzureCredential: managed identity in Azure, az login locally).
 * Container: AZURE_STORAGE_CONTAINER (default "database-backups"); prefix: AZURE_STORAGE_PREFIX
 * (default "app"); AZURE_STORAGE_CREATE_CONTAINER=true creates a missing container on start, as
 * `createContainer: true` does. None set: a local directory, BACKUP_DIR (default ./.data/backups).
 */
export function storeFromEnv(env: Env = process.env): SnapshotStore {
  const container = env.AZURE_STORAGE_CONTAINER || 'database-backups';
  const prefix = env.AZURE_STORAGE_PREFIX ?? 'app';
  const createContainer = createsContainerFromEnv(env);
  if (env.AZURE_STORAGE_CONNECTION_STRING) {
    return configuredAzureBlobStore({ connectionString: env.AZURE_STORAGE_CONNECTION_STRING, container, prefix, createContainer }, ENV_HINTS);
  }
  if (env.AZURE_STORAGE_CONTAINER_URL) return configuredAzureBlobStore({ containerUrl: env.AZURE_STORAGE_CONTAINER_URL, prefix, createContainer }, ENV_HINTS);
  const accountUrl = env.AZURE_STORAGE_ACCOUNT_URL || (env.AZURE_STORAGE_ACCOUNT_NAME ? `https://${env.AZURE_STORAGE_ACCOUNT_NAME}.blob.core.windows.net` : undefined);
  if (accountUrl) return configuredAzureBlobStore({ accountUrl, container, prefix, createContainer }, ENV_HINTS);
  if (env.AZURE_STORAGE_CONTAINER || env.AZURE_STORAGE_PREFIX) {
    throw new SyncError(
      'CONFIG',
      'AZURE_STORAGE_CONTAINER/AZURE_STORAGE_PREFIX are set but no account is: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT_NAME.',
    );
  }
  // AZURE_STORAGE_CREATE_CONTAINER alone does not matter here: the directory is created as needed.
  return directoryStore({ dir: env.BACKUP_DIR || './.data/backups' });
}
