import { SyncError } from '../errors.ts';
import { azureBlobStore } from './azure-blob-store.ts';
import { directoryStore } from './directory-store.ts';
import type { Leaser, SnapshotStore } from './store.ts';

/**
 * Picks the store from the environment, in this order:
 * AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_CONTAINER_URL (SAS), AZURE_STORAGE_ACCOUNT_URL or
 * AZURE_STORAGE_ACCOUNT_NAME (DefaultAzureCredential: managed identity in Azure, az login locally).
 * Container: AZURE_STORAGE_CONTAINER (default "database-backups"); prefix: AZURE_STORAGE_PREFIX
 * (default "app"). None set: a local directory, BACKUP_DIR (default ./.data/backups).
 */
export function storeFromEnv(env: NodeJS.ProcessEnv = process.env): SnapshotStore & Leaser {
  const container = env.AZURE_STORAGE_CONTAINER || 'database-backups';
  const prefix = env.AZURE_STORAGE_PREFIX ?? 'app';
  if (env.AZURE_STORAGE_CONNECTION_STRING) {
    return azureBlobStore({ connectionString: env.AZURE_STORAGE_CONNECTION_STRING, container, prefix });
  }
  if (env.AZURE_STORAGE_CONTAINER_URL) return azureBlobStore({ containerUrl: env.AZURE_STORAGE_CONTAINER_URL, prefix });
  const accountUrl = env.AZURE_STORAGE_ACCOUNT_URL || (env.AZURE_STORAGE_ACCOUNT_NAME ? `https://${env.AZURE_STORAGE_ACCOUNT_NAME}.blob.core.windows.net` : undefined);
  if (accountUrl) return azureBlobStore({ accountUrl, container, prefix });
  if (env.AZURE_STORAGE_CONTAINER || env.AZURE_STORAGE_PREFIX) {
    throw new SyncError(
      'CONFIG',
      'AZURE_STORAGE_CONTAINER/AZURE_STORAGE_PREFIX are set but no account is: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_ACCOUNT_NAME.',
    );
  }
  return directoryStore({ dir: env.BACKUP_DIR || './.data/backups' });
}
