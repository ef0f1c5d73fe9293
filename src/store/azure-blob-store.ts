/**
 * `SnapshotStore` on Azure Blob Storage (or Azurite). Everything the core sees is a `SyncError`; SDK
 * errors are translated in one place (`toSyncError`) into a code plus a message that names the fix.
 */
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { TokenCredential } from '@azure/core-auth';
import type * as StorageBlob from '@azure/storage-blob';
import type { AnonymousCredential, ContainerClient, RestError, StoragePipelineOptions, StorageSharedKeyCredential } from '@azure/storage-blob';
import { assertKnownKeys, keysOf } from '../config-keys.ts';
import { SyncError } from '../errors.ts';
import type { LeaseGrant, SmallObject, SnapshotStore, StoredObject, WriteCondition } from './store.ts';
import { azureRest, header, isRestError, parseBlobList, totalSize, type RangeResponse } from './azure-rest.ts';
import { blobUrl, containerUrlWith, resolveTarget, type AuthKind, type AzureTarget, type CredentialOption } from './azure-target.ts';

interface CommonOptions {
  /** Virtual folder inside the container; keys become `${prefix}/${key}`. Empty means the container root. */
  prefix?: string;
  /** Let `probe()` create the container when it is missing (needs permission to create containers). */
  createContainer?: boolean;
  /** Give up on a request after this long without progress (ms). Default 30000. */
  requestTimeoutMs?: number;
}

export interface ConnectionStringOptions extends CommonOptions {
  connectionString: string;
  container: string;
}

export interface AccountUrlOptions extends CommonOptions {
  /** e.g. `https://myaccount.blob.core.windows.net` (may carry an account SAS query instead of a credential). */
  accountUrl: string;
  /** Default: `new DefaultAzureCredential()` (managed identity on Azure, `az login` locally; needs the optional peer `@azure/identity`). */
  credential?: TokenCredential;
  container: string;
}

export interface ContainerUrlOptions extends CommonOptions {
  /** e.g. `https://myaccount.blob.core.windows.net/backups?sv=...&sig=...`; without a SAS, pass `credential`. */
  containerUrl: string;
  credential?: TokenCredential;
}

export type AzureBlobStoreOptions = ConnectionStringOptions | AccountUrlOptions | ContainerUrlOptions;

/** Every option of every shape (which keys go together is checked in connect()). */
const AZURE_BLOB_STORE_OPTION_KEYS = keysOf<ConnectionStringOptions & AccountUrlOptions & ContainerUrlOptions>({
  connectionString: true,
  accountUrl: true,
  containerUrl: true,
  container: true,
  credential: true,
  prefix: true,
  createContainer: true,
  requestTimeoutMs: true,
});

const BLOCK_SIZE = 8 * 1024 * 1024;
const CONCURRENCY = 4;
/**
 * Blobs per LIST page. The SDK parses a page's XML in one synchronous step on the app's thread:
 * a 5000-blob page of chunks/ (600-1000 at 1M rows) stalled writes for 200-250 ms during a snapshot.
 * A page of 50 parses in a few ms (once the parser is warm), at one more request per 50 blobs.
 */
export const LIST_PAGE_SIZE = 50;
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * The SDK, loaded when an operation first needs it (or prepare() asks) rather than when the package
 * is imported or a store is made: every operation but a whole-file upload (full mode) goes over
 * azure-rest.ts, so an app in the default incremental mode never loads it, nor does one on the
 * directory store. Its CommonJS build
 * rather than its ESM one: in a fresh Node 20 process `require` takes 120-160 ms where `import` takes
 * 190-250 ms (the ESM build is hundreds of small modules to resolve and link). Same code, same
 * version; errors are recognised by name (isRestError), not by class identity.
 */
let storageBlobModule: typeof StorageBlob | undefined;
function storageBlob(): typeof StorageBlob {
  return (storageBlobModule ??= createRequire(import.meta.url)('@azure/storage-blob') as typeof StorageBlob);
}



/**
 * How the store was configured, so that an error names the fix in the terms the user configured it in:
 * options in code (`azureBlobStore()`), or environment variables (`storeFromEnv()`, the CLI).
 */
export interface ConfigHints {
  /** The setting that carries each option: `connectionString`, or `AZURE_STORAGE_CONNECTION_STRING`. */
  setting(option: CredentialOption): string;
  /** How to have a missing container created. */
  createContainer: string;
  /** How to switch from a shared key to an Azure AD identity. */
  useIdentity: string;
}

const CODE_HINTS: ConfigHints = {
  setting: (option) => option,
  createContainer: 'pass createContainer: true',
  useIdentity: 'use accountUrl with a TokenCredential (new DefaultAzureCredential()) instead of connectionString',
};

interface Context {
  op: string;
  key?: string;
  endpoint: string;
  account: string;
  containerName: string;
  auth: AuthKind;
  option: CredentialOption;
  sasExpiry?: Date;
  hints: ConfigHints;
  timeoutMs: number;
  timedOut: boolean;
}

export function azureBlobStore(options: AzureBlobStoreOptions): SnapshotStore {
  return configuredAzureBlobStore(options, CODE_HINTS);
}

/** `azureBlobStore()` with error hints for another way of configuring it (`storeFromEnv()`); not exported by the package. */
export function configuredAzureBlobStore(options: AzureBlobStoreOptions, hints: ConfigHints): SnapshotStore {
  if (!options || typeof options !== 'object') {
    throw new SyncError('CONFIG', 'azureBlobStore(options) needs an options object with connectionString, accountUrl or containerUrl.');
  }
  assertKnownKeys(options, AZURE_BLOB_STORE_OPTION_KEYS, '', 'azureBlobStore: ');
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new SyncError('CONFIG', `azureBlobStore: requestTimeoutMs must be a positive number of milliseconds (got ${String(options.requestTimeoutMs)}).`);
  }
  if (options.createContainer !== undefined && typeof options.createContainer !== 'boolean') {
    throw new SyncError('CONFIG', 'azureBlobStore: createContainer must be true or false.');
  }
  const prefix = normalizePrefix(options.prefix);

  // The core wraps the store in retrying() (p-retry, src/store/retrying-store.ts), so the SDK retries only briefly to ride out a
  // blip; long outages surface quickly as transient STORE_UNREACHABLE for the core to schedule.
  // tryTimeoutInMs is only the server-side `timeout=` parameter: the client-side bound is the watchdog below.
  const pipelineOptions = (): StoragePipelineOptions => ({
    retryOptions: { maxTries: 3, retryDelayInMs: 200, maxRetryDelayInMs: 2_000, tryTimeoutInMs: Math.max(1_000, timeoutMs) },
    userAgentOptions: { userAgentPrefix: 'drizzle-libsql-blob' },
  });
  const target = resolveTarget(options, lazyDefaultCredential);
  validateContainerName(target.containerName);
  const { containerName, option, sasExpiry } = target;
  const auth: AuthKind = target.authorization.kind;
  // The SDK client, made (and the SDK loaded) when an operation first needs it: see prepare().
  let sdkClient: ContainerClient | undefined;
  const container = (): ContainerClient => (sdkClient ??= containerClient(target, pipelineOptions()));
  // Plain signed requests for what a start waits on (probe, small reads, the lease, chunks): azure-rest.ts.
  const rest = target.proxyUri ? undefined : azureRest(target.authorization);
  /** A lease operation on a blob: plain when it can, else the SDK's lease client. Resolves with the blob's ETag (the service returns it). */
  const lease = async (dog: Watchdog, name: string, action: 'acquire' | 'renew' | 'release', leaseId: string, durationSec?: number): Promise<LeaseGrant> => {
    if (!rest) {
      const client = container().getBlobClient(name).getBlobLeaseClient(leaseId);
      const options = { abortSignal: dog.signal };
      const response = await (action === 'acquire' ? client.acquireLease(durationSec!, options) : action === 'renew' ? client.renewLease(options) : client.releaseLease(options));
      return { etag: response.etag };
    }
    const headers: Record<string, string> = { 'x-ms-lease-action': action, ...(action === 'acquire' ? { 'x-ms-proposed-lease-id': leaseId, 'x-ms-lease-duration': String(durationSec) } : { 'x-ms-lease-id': leaseId }) };
    const response = await rest.send({ method: 'PUT', url: blobUrl(target, name, { comp: 'lease' }), headers, expect: action === 'acquire' ? [201] : [200], signal: dog.signal });
    return { etag: header(response.headers['etag']) };
  };

  const endpoint = target.containerUrl; // never a SAS: the target keeps it apart
  const account = target.accountName || new URL(target.containerUrl).hostname;
  const location = `azure://${account}/${containerName}${prefix ? `/${prefix}` : ''}`;

  const blobName = (key: string) => {
    if (typeof key !== 'string' || key === '' || key.startsWith('/')) {
      throw new SyncError('CONFIG', `Store key ${JSON.stringify(key)} must be a non-empty relative path.`);
    }
    return prefix ? `${prefix}/${key}` : key;
  };
  const relativeKey = (name: string) => (prefix ? name.slice(prefix.length + 1) : name);

  /** Runs one store operation under a stall watchdog and translates whatever it throws. */
  async function run<T>(op: string, key: string | undefined, fn: (dog: Watchdog) => Promise<T>): Promise<T> {
    const dog = new Watchdog(timeoutMs);
    try {
      return await fn(dog);
    } catch (error) {
      throw toSyncError(error, { op, key, endpoint, account, containerName, auth, option, sasExpiry, hints, timeoutMs, timedOut: dog.timedOut });
    } finally {
      dog.dispose();
    }
  }

  // A container SAS usually cannot read container properties, but listing is a permission we need anyway.
  const check = async (dog: Watchdog): Promise<void> => {
    if (rest) {
      const params: Record<string, string> = auth === 'sas' ? { restype: 'container', comp: 'list', maxresults: '1', ...(prefix ? { prefix: `${prefix}/` } : {}) } : { restype: 'container' };
      await rest.send({ method: 'GET', url: containerUrlWith(target, params), expect: [200], signal: dog.signal });
    } else if (auth === 'sas') {
      await container().listBlobsFlat({ prefix: prefix ? `${prefix}/` : undefined, abortSignal: dog.signal }).byPage({ maxPageSize: 1 }).next();
    } else {
      await container().getProperties({ abortSignal: dog.signal });
    }
  };

  return {
    location,

    prepare() {
      // Only where the SDK does everything (a proxy is configured). Otherwise it does only whole-file
      // uploads (full mode), and loads at the first one.
      if (rest) return;
      container();
      // The SDK's first request checks its body against FormData, which makes Node load undici (~25 ms).
      void globalThis.FormData;
    },

    async probe() {
      try {
        await run('probe', undefined, check);
      } catch (error) {
        if (!options.createContainer || !(error instanceof SyncError) || error.code !== 'STORE_NOT_FOUND') throw error;
        await run('create container', undefined, async (dog) => {
          if (!rest) return container().createIfNotExists({ abortSignal: dog.signal });
          try {
            return await rest.send({ method: 'PUT', url: containerUrlWith(target, { restype: 'container' }), expect: [201], signal: dog.signal });
          } catch (error) {
            if (isRestError(error) && error.statusCode === 409 && serviceCode(error) === 'ContainerAlreadyExists') return undefined;
            throw error;
          }
        });
        await run('probe', undefined, check);
      }
    },

    async readSmall(key) {
      const name = blobName(key);
      try {
        return await run('read', key, async (dog): Promise<SmallObject> => {
          if (rest) {
            const { body, headers } = await rest.send({ method: 'GET', url: blobUrl(target, name), expect: [200], signal: dog.signal, onProgress: () => dog.touch() });
            return { body, etag: requireEtag(header(headers['etag']), key), leased: header(headers['x-ms-lease-state']) === 'leased' };
          }
          const response = await container().getBlobClient(name).download(0, undefined, { abortSignal: dog.signal, maxRetryRequests: 3 });
          const chunks: Buffer[] = [];
          for await (const chunk of response.readableStreamBody ?? []) {
            chunks.push(chunk as Buffer);
            dog.touch();
          }
          return { body: Buffer.concat(chunks), etag: requireEtag(response.etag, key), leased: response.leaseState === 'leased' };
        });
      } catch (error) {
        if (error instanceof SyncError && error.code === 'NOT_FOUND') return null;
        throw error;
      }
    },

    async writeSmall(key, body, condition: WriteCondition) {
      const name = blobName(key);
      const conditions = {
        ...('ifMatch' in condition ? { ifMatch: condition.ifMatch } : { ifNoneMatch: '*' as const }),
        ...(condition.leaseId ? { leaseId: condition.leaseId } : {}),
      };
      // Caveat: if a response is lost and the SDK retries, the retry itself can see 412/409 and report a
      // CONFLICT although our write landed; the core re-reads the manifest after a CONFLICT anyway.
      return run('write', key, async (dog) => {
        if (rest) {
          const headers = {
            'x-ms-blob-type': 'BlockBlob',
            ...('ifMatch' in condition ? { 'if-match': condition.ifMatch } : { 'if-none-match': '*' }),
            ...(condition.leaseId ? { 'x-ms-lease-id': condition.leaseId } : {}),
          };
          const response = await rest.send({ method: 'PUT', url: blobUrl(target, name), headers, body, expect: [201], signal: dog.signal });
          return { etag: requireEtag(header(response.headers['etag']), key) };
        }
        const response = await container().getBlockBlobClient(name).upload(body, body.length, { conditions, abortSignal: dog.signal });
        return { etag: requireEtag(response.etag, key) };
      });
    },

    acquireLease(key, leaseId, durationSec) {
      return run('acquire lease on', key, (dog) => lease(dog, blobName(key), 'acquire', leaseId, durationSec));
    },

    async renewLease(key, leaseId) {
      await run('renew lease on', key, (dog) => lease(dog, blobName(key), 'renew', leaseId));
    },

    async releaseLease(key, leaseId) {
      try {
        await run('release lease on', key, (dog) => lease(dog, blobName(key), 'release', leaseId));
      } catch (error) {
        // Already expired and taken, or broken: nothing of ours left to release.
        if (!(error instanceof SyncError && (error.code === 'LEASE_LOST' || error.code === 'NOT_FOUND'))) throw error;
      }
    },

    async uploadBuffer(key, body) {
      const name = blobName(key);
      await run('upload', key, (dog): Promise<unknown> =>
        rest
          ? rest.send({ method: 'PUT', url: blobUrl(target, name), headers: { 'x-ms-blob-type': 'BlockBlob' }, body, expect: [201], signal: dog.signal })
          : container().getBlockBlobClient(name).upload(body, body.length, { abortSignal: dog.signal }),
      );
    },

    async uploadFile(key, filePath, metadata, uploadOptions) {
      const name = blobName(key);
      if (metadata) validateMetadata(metadata);
      await run('upload', key, (dog) =>
        container().getBlockBlobClient(name).uploadFile(filePath, {
          blockSize: BLOCK_SIZE,
          concurrency: CONCURRENCY, // memory is bounded by blockSize x concurrency, whatever the file size
          maxSingleShotSize: BLOCK_SIZE, // larger files go in blocks, so each request stays small and retryable
          metadata,
          abortSignal: dog.signal,
          onProgress: ({ loadedBytes }) => {
            dog.touch();
            uploadOptions?.onProgress?.(loadedBytes);
          },
        }),
      );
    },

    async *download(key) {
      const blob = () => container().getBlobClient(blobName(key));
      const dog = new Watchdog(timeoutMs);
      let done = false;
      /** One range of the blob, whole, by the plain GET when it can (azure-rest.ts) or else the SDK. */
      const getRange = async (offset: number, count: number, ifMatch?: string): Promise<RangeResponse> => {
        if (rest) return rest.getRange(blobUrl(target, blobName(key)), { offset, count, ...(ifMatch ? { ifMatch } : {}), signal: dog.signal, onProgress: () => dog.touch() });
        const response = await blob().download(offset, count, {
          abortSignal: dog.signal,
          ...(ifMatch ? { conditions: { ifMatch } } : {}),
          maxRetryRequests: 3, // the SDK resumes a broken body stream from where it stopped
        });
        const size = totalSize(response.contentRange) ?? response.contentLength ?? 0;
        return { size, etag: response.etag, body: await readBody(response, offset, Math.min(count, size - offset), size) };
      };
      // Copied into one buffer of the range's size as the parts arrive (not joined at the end): each
      // network part is dead at once, so a body never holds twice its size.
      const readBody = async (response: { readableStreamBody?: NodeJS.ReadableStream }, offset: number, count: number, size: number): Promise<Buffer> => {
        const body = Buffer.allocUnsafeSlow(count);
        let filled = 0;
        for await (const chunk of response.readableStreamBody ?? []) {
          const part = chunk as Buffer;
          if (filled + part.length > count) {
            throw new SyncError('STORE_UNREACHABLE', `Download of ${key} from ${endpoint} returned more than the ${count} bytes asked for at byte ${offset}.`, { transient: true });
          }
          part.copy(body, filled);
          filled += part.length;
          dog.touch();
        }
        if (filled !== count) {
          throw new SyncError('STORE_UNREACHABLE', `Download of ${key} from ${endpoint} ended early at byte ${offset + filled} of ${size}.`, { transient: true });
        }
        return body;
      };
      try {
        // The first block's GET also tells the size and ETag: a small blob (a chunk) is one request.
        let first: RangeResponse;
        try {
          first = await getRange(0, BLOCK_SIZE);
        } catch (error) {
          // A range on an empty blob is 416; anything else (404, auth) is reported below.
          if (!(isRestError(error) && error.statusCode === 416)) throw error;
          const length = rest
            ? (await rest.send({ method: 'GET', url: blobUrl(target, blobName(key)), expect: [200], signal: dog.signal })).body.length
            : ((await blob().getProperties({ abortSignal: dog.signal })).contentLength ?? 0);
          if (length !== 0) throw error;
          done = true;
          return;
        }
        const { size, etag } = first;
        if (first.body.length !== Math.min(BLOCK_SIZE, size)) {
          throw new SyncError('STORE_UNREACHABLE', `Download of ${key} from ${endpoint} returned ${first.body.length} bytes at byte 0 of ${size}.`, { transient: true });
        }
        const ranges: Array<[offset: number, count: number]> = [];
        for (let offset = BLOCK_SIZE; offset < size; offset += BLOCK_SIZE) ranges.push([offset, Math.min(BLOCK_SIZE, size - offset)]);
        // The rest in parallel ranged GETs pinned to the first one's ETag (a blob replaced mid-way fails
        // with 412 instead of producing a spliced file), yielded in order. Memory: CONCURRENCY x BLOCK_SIZE.
        const fetchRange = async ([offset, count]: [number, number]): Promise<Buffer> => {
          const { body } = await getRange(offset, count, etag);
          if (body.length !== count) {
            throw new SyncError('STORE_UNREACHABLE', `Download of ${key} from ${endpoint} ended early at byte ${offset + body.length} of ${size}.`, { transient: true });
          }
          return body;
        };
        const inflight: Array<Promise<Buffer>> = [Promise.resolve(first.body)];
        let next = 0;
        const fill = () => {
          while (inflight.length < CONCURRENCY && next < ranges.length) {
            const request = fetchRange(ranges[next++]!);
            request.catch(() => undefined); // observed when its turn comes; siblings may fail first
            inflight.push(request);
          }
        };
        fill();
        while (inflight.length > 0) {
          const body = await inflight.shift()!;
          fill();
          dog.touch();
          if (body.length > 0) yield body;
        }
        done = true;
      } catch (error) {
        throw toSyncError(error, { op: 'download', key, endpoint, account, containerName, auth, option, sasExpiry, hints, timeoutMs, timedOut: dog.timedOut });
      } finally {
        if (done) dog.dispose();
        else dog.cancel(); // the consumer stopped early or a range failed: abort the other requests
      }
    },

    async downloadToFile(key, filePath) {
      // The first chunk comes before the file is created, so a missing blob leaves no empty file behind.
      const chunks = this.download(key)[Symbol.asyncIterator]();
      let next = await chunks.next();
      const file = await open(filePath, 'w');
      let bytes = 0;
      try {
        for (; !next.done; next = await chunks.next()) {
          await file.write(next.value);
          bytes += next.value.length;
        }
      } finally {
        await file.close();
      }
      return { bytes };
    },

    async delete(key, condition) {
      const name = blobName(key);
      const conditions = condition ? { ifUnmodifiedSince: condition.ifUnmodifiedSince } : undefined;
      await run('delete', key, async (dog) => {
        if (!rest) return container().getBlobClient(name).deleteIfExists({ deleteSnapshots: 'include', conditions, abortSignal: dog.signal });
        const headers = { 'x-ms-delete-snapshots': 'include', ...(condition ? { 'if-unmodified-since': condition.ifUnmodifiedSince.toUTCString() } : {}) };
        try {
          return await rest.send({ method: 'DELETE', url: blobUrl(target, name), headers, expect: [202], signal: dog.signal });
        } catch (error) {
          if (isRestError(error) && error.statusCode === 404 && serviceCode(error) === 'BlobNotFound') return undefined; // already gone
          throw error;
        }
      });
    },

    async list(listPrefix) {
      const full = prefix ? `${prefix}/${listPrefix}` : listPrefix;
      return run('list', listPrefix, async (dog) => {
        const out: StoredObject[] = [];
        if (rest) {
          let marker = '';
          do {
            const params = { restype: 'container', comp: 'list', maxresults: String(LIST_PAGE_SIZE), ...(full ? { prefix: full } : {}), ...(marker ? { marker } : {}) };
            const page = parseBlobList((await rest.send({ method: 'GET', url: containerUrlWith(target, params), expect: [200], signal: dog.signal, onProgress: () => dog.touch() })).body);
            for (const item of page.blobs) out.push({ key: relativeKey(item.name), size: item.size, lastModified: item.lastModified });
            marker = page.nextMarker;
          } while (marker);
          return out.sort((a, b) => a.key.localeCompare(b.key));
        }
        for await (const page of container().listBlobsFlat({ prefix: full || undefined, abortSignal: dog.signal }).byPage({ maxPageSize: LIST_PAGE_SIZE })) {
          dog.touch();
          for (const item of page.segment.blobItems) {
            out.push({ key: relativeKey(item.name), size: item.properties.contentLength ?? 0, lastModified: item.properties.lastModified });
          }
        }
        return out.sort((a, b) => a.key.localeCompare(b.key)); // same order as directoryStore
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Options

/** The SDK's client for the target (loads the SDK on first call: see storageBlob()). */
function containerClient(target: AzureTarget, pipelineOptions: StoragePipelineOptions): ContainerClient {
  const { AnonymousCredential, ContainerClient, StorageSharedKeyCredential } = storageBlob();
  const a = target.authorization;
  const credential: StorageSharedKeyCredential | AnonymousCredential | TokenCredential =
    a.kind === 'sharedKey' ? new StorageSharedKeyCredential(a.accountName, a.accountKey.toString('base64')) : a.kind === 'sas' ? new AnonymousCredential() : a.credential;
  const url = containerUrlWith(target);
  // A connection string's DevelopmentStorageProxyUri, as the SDK's fromConnectionString applies it.
  const proxy = target.proxyUri ? new URL(target.proxyUri) : undefined;
  const clientOptions: StoragePipelineOptions = proxy ? { ...pipelineOptions, proxyOptions: { host: `${proxy.protocol}//${proxy.hostname}`, port: Number.parseInt(proxy.port || '80', 10) } } : pipelineOptions;
  return new ContainerClient(url, credential, clientOptions);
}

/**
 * `new DefaultAzureCredential()`, imported on the first token request: @azure/identity (about 42 MB
 * installed, as much again as everything else) is an optional peer dependency that only apps using
 * Entra ID without their own `credential` need.
 */
function lazyDefaultCredential(): TokenCredential {
  let loaded: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      loaded ??= import('@azure/identity').then(
        ({ DefaultAzureCredential }) => new DefaultAzureCredential(),
        (error: NodeJS.ErrnoException) => {
          if (error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
          throw new SyncError('CONFIG', 'azureBlobStore: accountUrl without a credential signs in with DefaultAzureCredential from @azure/identity, which is not installed; run `npm install @azure/identity`, or use a connectionString or a SAS URL instead.', { cause: error });
        },
      );
      return (await loaded).getToken(scopes, options);
    },
  };
}

/** Azure's container naming rules; checked up front because the service answers a bad name with a vague 400. */
function validateContainerName(name: string): void {
  if (name === '$root') return;
  if (!/^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/.test(name) || name.length < 3 || name.length > 63) {
    throw new SyncError('CONFIG', `azureBlobStore: container ${JSON.stringify(name)} is not a valid container name (3-63 characters: lowercase letters, digits and single hyphens, starting and ending with a letter or digit).`);
  }
}

function normalizePrefix(prefix: unknown): string {
  if (prefix === undefined) return '';
  if (typeof prefix !== 'string') throw new SyncError('CONFIG', 'azureBlobStore: prefix must be a string such as "prod/app1".');
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed.split('/').some((part) => part === '' || part === '.' || part === '..') && trimmed !== '') {
    throw new SyncError('CONFIG', `azureBlobStore: prefix ${JSON.stringify(prefix)} has an empty, "." or ".." segment.`);
  }
  return trimmed;
}

function validateMetadata(metadata: Record<string, string>): void {
  for (const [name, value] of Object.entries(metadata)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new SyncError('CONFIG', `Blob metadata name ${JSON.stringify(name)} must be a C# identifier (letters, digits, underscore).`);
    if (typeof value !== 'string' || !/^[\x20-\x7e]*$/.test(value)) throw new SyncError('CONFIG', `Blob metadata ${name} must be printable ASCII.`);
  }
}

function requireEtag(etag: string | undefined, key: string): string {
  if (!etag) throw new SyncError('STORE_UNREACHABLE', `The service returned no ETag for ${key}.`, { transient: true });
  return etag;
}

// ---------------------------------------------------------------------------------------------------
// Timeouts

/**
 * Aborts an operation after `ms` without progress. The SDK has no client-side per-request timeout of its
 * own (tryTimeoutInMs is server-side only), so without this a silent network hangs a call forever.
 * Streaming calls `touch()` on every chunk, so a large transfer that keeps moving is never cut off.
 */
class Watchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  timedOut = false;

  constructor(private readonly ms: number) {
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    clearTimeout(this.timer);
    if (this.controller.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.ms);
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.controller.abort();
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// Error mapping

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'REQUEST_SEND_ERROR']);
const IDENTITY_ERRORS = new Set(['CredentialUnavailableError', 'AuthenticationError', 'AggregateAuthenticationError', 'AuthenticationRequiredError']);

/** The one place SDK, identity and network failures become `SyncError`s. Always keeps `cause`. */
function toSyncError(error: unknown, ctx: Context): Error {
  if (error instanceof SyncError) return error;
  // A local file problem (missing upload source, disk full on download) is not the store's: pass it on as is.
  if (error instanceof Error && 'syscall' in error && 'path' in error && !ctx.timedOut) return error;
  const what = `${ctx.op}${ctx.key ? ` ${ctx.key}` : ''} at ${ctx.endpoint}`;
  const err = error as { name?: string; message?: string };

  if (err?.name === 'AbortError' || ctx.timedOut) {
    return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: no response within ${ctx.timeoutMs} ms; check the network path to the storage account.`, { cause: error, transient: true });
  }
  if (err?.name && IDENTITY_ERRORS.has(err.name)) {
    // DefaultAzureCredential's message lists why each credential in its chain failed: keep all of it.
    return new SyncError('STORE_AUTH', `Cannot ${what}: could not get an Azure AD token. On Azure, enable a managed identity for the app (and set AZURE_CLIENT_ID for a user-assigned one); locally, run \`az login\`; or use ${ctx.hints.setting('connectionString')} or a SAS ${ctx.hints.setting('containerUrl')} instead. Details: ${err.message ?? ''}`, { cause: error });
  }
  if (!isRestError(error)) {
    return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: ${firstLine(err?.message ?? String(error))}`, { cause: error });
  }

  const status = error.statusCode;
  const code = serviceCode(error);
  const detail = `${status ?? ''} ${code ?? ''}`.trim();

  if (status === undefined) {
    if (code && /^(CERT_|ERR_TLS|SELF_SIGNED|DEPTH_ZERO|UNABLE_TO_)/.test(code)) {
      return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: TLS failure (${code}); check the endpoint and any TLS-intercepting proxy.`, { cause: error });
    }
    const hint = code === 'ENOTFOUND' || code === 'EAI_AGAIN'
      ? 'the host name does not resolve; check the account name / endpoint'
      : code === 'ECONNREFUSED' ? 'nothing accepts connections there' : 'network error';
    const known = code !== undefined && NETWORK_CODES.has(code);
    return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: ${hint} (${code ?? firstLine(error.message)}).${known ? '' : ` ${firstLine(error.message)}`}`, { cause: error, transient: true });
  }
  if (status === 401 || status === 403) {
    return new SyncError('STORE_AUTH', `Cannot ${what}: access denied (${detail}); ${authFix(code, ctx)}`, { cause: error });
  }
  if (status === 404) {
    if (code === 'BlobNotFound') return new SyncError('NOT_FOUND', `${ctx.key ?? 'The blob'} does not exist in ${ctx.endpoint}.`, { cause: error });
    if (code !== 'ContainerNotFound') {
      return new SyncError('STORE_NOT_FOUND', `Cannot ${what}: not found (${detail}); check that storage account "${ctx.account}" and container "${ctx.containerName}" exist at this endpoint.`, { cause: error });
    }
    return new SyncError('STORE_NOT_FOUND', `Container "${ctx.containerName}" does not exist in storage account "${ctx.account}" (${detail}, ${ctx.endpoint}): create it (az storage container create --name ${ctx.containerName} --account-name ${ctx.account} --auth-mode login) or ${ctx.hints.createContainer}.`, { cause: error });
  }
  if (status === 409 && code === 'ContainerBeingDeleted') {
    return new SyncError('STORE_NOT_FOUND', `Container "${ctx.containerName}" is being deleted; wait for the deletion to finish before recreating it.`, { cause: error, transient: true });
  }
  if ((status === 409 || status === 412) && code?.startsWith('Lease')) {
    // LeaseAlreadyPresent: acquiring while another holds it. LeaseIdMissing: writing a blob another holds.
    // Every other Lease* code (IdMismatch, NotPresent, Lost, IsBroken...) means ours is gone.
    if (code === 'LeaseAlreadyPresent' || code === 'LeaseIdMissing') {
      return new SyncError('LEASE_HELD', `Cannot ${what}: another instance holds the writer lease (${detail}).`, { cause: error });
    }
    return new SyncError('LEASE_LOST', `Cannot ${what}: this instance no longer holds the writer lease (${detail}); another instance took over or the lease was broken.`, { cause: error });
  }
  if (status === 412 || (status === 409 && code === 'BlobAlreadyExists')) {
    return new SyncError('CONFLICT', `Cannot ${what}: it changed since it was read (${detail}); another writer got there first.`, { cause: error, transient: ctx.op === 'download' });
  }
  if (status === 408 || status === 429 || status >= 500) {
    return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: the service answered ${detail} (throttled or temporarily unavailable).`, { cause: error, transient: true });
  }
  if (status === 400) {
    return new SyncError('CONFIG', `Cannot ${what}: the service rejected the request (${detail}): ${firstLine(error.message)}`, { cause: error });
  }
  return new SyncError('STORE_UNREACHABLE', `Cannot ${what}: unexpected ${detail}: ${firstLine(error.message)}`, { cause: error });
}

/** HEAD responses carry the code only in a header, which the SDK puts in `details.errorCode`. */
function serviceCode(error: RestError): string | undefined {
  const fromDetails = (error.details as { errorCode?: unknown } | undefined)?.errorCode;
  return error.code ?? (typeof fromDetails === 'string' ? fromDetails : undefined);
}

function authFix(code: string | undefined, ctx: Pick<Context, 'auth' | 'option' | 'sasExpiry' | 'hints'>): string {
  const { auth, hints } = ctx;
  const setting = hints.setting(ctx.option);
  if (code === 'KeyBasedAuthenticationNotPermitted') {
    return `shared key access is disabled on this storage account; ${hints.useIdentity}, and grant the identity the 'Storage Blob Data Contributor' role.`;
  }
  if (code === 'AuthorizationSourceIPMismatch' || code === 'AuthorizationProtocolMismatch') {
    return `the credential in ${setting} is valid but restricted to other IPs or protocols; regenerate it without that restriction.`;
  }
  if (auth === 'token' && code !== 'AuthenticationFailed' && code !== 'InvalidAuthenticationInfo') {
    return "grant the identity the 'Storage Blob Data Contributor' role on the account or container (Owner/Contributor is not enough for data access; new role assignments take a few minutes). If the role is there, the account firewall may be blocking this network.";
  }
  if (auth === 'token') return 'the access token was rejected; check that the identity belongs to the storage account\'s tenant.';
  if (auth === 'sas') {
    if (ctx.sasExpiry && ctx.sasExpiry.getTime() <= Date.now()) {
      return `the SAS token in ${setting} expired at ${ctx.sasExpiry.toISOString()} (its se= parameter); issue a new one with read, write, delete and list permissions and put it in ${setting}.`;
    }
    return `check the SAS token in ${setting}: it may be expired, not yet valid, signed with a rotated key, or missing permissions (needs read, write, delete, list).`;
  }
  // Real Azure says AuthenticationFailed for a wrong key; Azurite says AuthorizationFailure.
  return `check the account key / connection string in ${setting} (a rotated key invalidates the old one: copy a current connection string from the storage account's "Access keys"); if the key is right, the storage account firewall may be blocking this network.`;
}

function firstLine(message: string | undefined): string {
  return (message ?? '').split('\n')[0] ?? '';
}
