/**
 * `azureBlobStore({ accountUrl })` without a credential signs in with @azure/identity's
 * DefaultAzureCredential, which the store imports on the first token request (the package is an
 * optional peer; test/package covers an install without it). No network: the chain is narrowed to
 * EnvironmentCredential with no AZURE_CLIENT_* set, which fails before any request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { azureBlobStore, findSyncError } from 'drizzle-libsql-blob';

test('accountUrl without a credential loads DefaultAzureCredential on first use; its failure is STORE_AUTH', async () => {
  const saved = { ...process.env };
  process.env.AZURE_TOKEN_CREDENTIALS = 'EnvironmentCredential';
  for (const name of ['AZURE_CLIENT_ID', 'AZURE_TENANT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE_PATH', 'AZURE_USERNAME']) delete process.env[name];
  try {
    // Building the store imports nothing and contacts nothing.
    const store = azureBlobStore({ accountUrl: 'https://devstoreaccount1.blob.core.windows.net', container: 'backups' });
    const error = await store.probe().then(() => undefined, (e: unknown) => e);
    const sync = findSyncError(error);
    assert.equal(sync?.code, 'STORE_AUTH', String(error));
    assert.match(sync.message, /could not get an Azure AD token/);
    assert.match(sync.message, /EnvironmentCredential/); // the identity library's own reason, kept
  } finally {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  }
});
