/**
 * Where an Azure store's container is and how requests to it are authorized, worked out from
 * azureBlobStore()'s options without the SDK: the SDK (~120 ms to load) is loaded later, when an
 * operation needs it, so a start that only probes, reads and restores (azure-rest.ts) never waits for
 * it. Every check that needs no network happens here, at once, with a message that names the fix.
 *
 * Connection strings are read as the SDK reads them (storage-blob's extractConnectionStringParts): an
 * account connection string has both `DefaultEndpointsProtocol=` and `AccountKey=`; anything else is
 * a SAS connection string (`BlobEndpoint` + `SharedAccessSignature`); `UseDevelopmentStorage=true` is
 * Azurite's well-known account.
 */
import type { TokenCredential } from '@azure/core-auth';
import { SyncError } from '../errors.ts';

export type AuthKind = 'sharedKey' | 'sas' | 'token';
export type CredentialOption = 'connectionString' | 'accountUrl' | 'containerUrl';

export type Authorization =
  | { kind: 'sharedKey'; accountName: string; accountKey: Buffer }
  | { kind: 'sas' }
  | { kind: 'token'; credential: TokenCredential };

export interface AzureTarget {
  /** The container's URL, without a query: `https://acct.blob.core.windows.net/container`. */
  containerUrl: string;
  /** The SAS query (no leading `?`), '' without one. Never logged. */
  sas: string;
  accountName: string;
  containerName: string;
  authorization: Authorization;
  /** The option that carried the credential, for error hints. */
  option: CredentialOption;
  /** A SAS token's expiry (`se=`), when there is one. */
  sasExpiry?: Date;
  /** A connection string's DevelopmentStorageProxyUri: requests go through it (the SDK's proxy option). */
  proxyUri?: string;
}

export interface TargetOptions {
  connectionString?: unknown;
  accountUrl?: unknown;
  containerUrl?: unknown;
  container?: unknown;
  credential?: unknown;
}

/** Azurite's well-known development account (public, documented by Microsoft). */
const DEVELOPMENT_ACCOUNT = {
  accountName: 'devstoreaccount1',
  accountKey: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
  blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
};

/** Resolves the options to a target, or throws `CONFIG` naming what to fix. */
export function resolveTarget(options: TargetOptions, lazyDefaultCredential: () => TokenCredential): AzureTarget {
  const given = (['connectionString', 'accountUrl', 'containerUrl'] as const).filter((name) => name in options && options[name] !== undefined);
  if (given.length !== 1) {
    throw new SyncError('CONFIG', `azureBlobStore needs exactly one of connectionString, accountUrl or containerUrl (got ${given.length ? given.join(', ') : 'none'}).`);
  }
  const credential = options.credential as TokenCredential | undefined;
  if (credential !== undefined && typeof (credential as TokenCredential | null)?.getToken !== 'function') {
    throw new SyncError('CONFIG', 'azureBlobStore: credential must be a TokenCredential from @azure/identity (for example new DefaultAzureCredential()).');
  }

  if (options.connectionString !== undefined) {
    const containerName = requireContainer(options);
    if (typeof options.connectionString !== 'string' || options.connectionString.trim() === '') {
      throw new SyncError('CONFIG', 'azureBlobStore: connectionString is empty; copy it from the storage account\'s "Access keys" page.');
    }
    const parts = parseConnectionString(options.connectionString);
    const endpoint = new URL(parts.blobEndpoint);
    return {
      ...inContainer(endpoint, containerName),
      accountName: parts.accountName,
      containerName,
      authorization: parts.accountKey ? { kind: 'sharedKey', accountName: parts.accountName, accountKey: parts.accountKey } : { kind: 'sas' },
      sas: parts.sas ?? '',
      option: 'connectionString',
      ...(parts.sas ? sasExpiryOf(new URLSearchParams(parts.sas)) : {}),
      ...(parts.proxyUri ? { proxyUri: parts.proxyUri } : {}),
    };
  }

  if (options.accountUrl !== undefined) {
    const containerName = requireContainer(options);
    const url = parseUrl(options.accountUrl, 'accountUrl');
    const sas = url.search.replace(/^\?/, '');
    url.search = '';
    const accountName = accountNameOf(url);
    if (hasSas(sas) && !credential) {
      return { ...inContainer(url, containerName), accountName, containerName, authorization: { kind: 'sas' }, sas, option: 'accountUrl', ...sasExpiryOf(new URLSearchParams(sas)) };
    }
    requireHttps(url, 'accountUrl');
    return { ...inContainer(url, containerName), accountName, containerName, authorization: { kind: 'token', credential: credential ?? lazyDefaultCredential() }, sas: '', option: 'accountUrl' };
  }

  const url = parseUrl(options.containerUrl, 'containerUrl');
  const sas = url.search.replace(/^\?/, '');
  url.search = '';
  const claimed = options.container;
  let authorization: Authorization;
  if (hasSas(sas)) {
    if (credential) throw new SyncError('CONFIG', 'azureBlobStore: containerUrl carries a SAS token and a credential was also given; pass only one of them.');
    authorization = { kind: 'sas' };
  } else {
    if (!credential) {
      throw new SyncError('CONFIG', 'azureBlobStore: containerUrl has no SAS token (no sig= parameter); append a SAS with read, write, delete and list permissions, or pass credential.');
    }
    requireHttps(url, 'containerUrl');
    authorization = { kind: 'token', credential };
  }
  // The container is the last path segment (after the account's, on an IP-style endpoint such as Azurite's).
  const segments = url.pathname.split('/').filter(Boolean);
  const containerName = decodeURIComponent(segments[isIpStyle(url) ? 1 : 0] ?? '');
  if (!containerName) throw new SyncError('CONFIG', 'azureBlobStore: containerUrl does not name a container (expected https://<account>.blob.core.windows.net/<container>?<sas>).');
  if (claimed !== undefined && claimed !== containerName) {
    throw new SyncError('CONFIG', `azureBlobStore: container ${JSON.stringify(claimed)} does not match the container in containerUrl (${JSON.stringify(containerName)}); drop one of them.`);
  }
  const containerUrl = url.toString().replace(/\/+$/, '');
  return { containerUrl, accountName: accountNameOf(url), containerName, authorization, sas, option: 'containerUrl', ...(authorization.kind === 'sas' ? sasExpiryOf(new URLSearchParams(sas)) : {}) };
}

/** A blob's URL (path segments escaped, SAS appended), with `params` added to the query. */
export function blobUrl(target: AzureTarget, name: string, params: Record<string, string> = {}): string {
  return withQuery(`${target.containerUrl}/${name.split('/').map(encodeURIComponent).join('/')}`, target.sas, params);
}

/** The container's URL with its SAS and `params` (`restype=container`, ...). */
export function containerUrlWith(target: AzureTarget, params: Record<string, string> = {}): string {
  return withQuery(target.containerUrl, target.sas, params);
}

function withQuery(base: string, sas: string, params: Record<string, string>): string {
  const url = new URL(base);
  url.search = sas;
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.toString();
}

interface ConnectionStringParts {
  blobEndpoint: string;
  accountName: string;
  accountKey?: Buffer;
  sas?: string;
  proxyUri?: string;
}

/** The SDK's reading of a connection string; its messages name the bad field and never echo the string. */
export function parseConnectionString(given: string): ConnectionStringParts {
  const malformed = (what: string) =>
    new SyncError('CONFIG', `azureBlobStore: connectionString is malformed: ${what}. Expected "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net" or a SAS connection string.`);
  const value = (text: string, name: string): string | undefined => {
    for (const element of text.split(';')) {
      const trimmed = element.trim();
      if (trimmed.startsWith(`${name}=`)) return trimmed.slice(name.length + 1);
    }
    return undefined;
  };
  let text = given;
  let proxyUri: string | undefined;
  if (value(text, 'UseDevelopmentStorage') === 'true') {
    const proxy = value(text, 'DevelopmentStorageProxyUri');
    if (proxy) proxyUri = endpointUrl(proxy, malformed, 'DevelopmentStorageProxyUri');
    text = `DefaultEndpointsProtocol=http;AccountName=${DEVELOPMENT_ACCOUNT.accountName};AccountKey=${DEVELOPMENT_ACCOUNT.accountKey};BlobEndpoint=${DEVELOPMENT_ACCOUNT.blobEndpoint};`;
  }
  let blobEndpoint = value(text, 'BlobEndpoint');
  if (text.includes('DefaultEndpointsProtocol=') && text.includes('AccountKey=')) {
    const accountName = value(text, 'AccountName');
    const accountKey = Buffer.from(value(text, 'AccountKey') ?? '', 'base64');
    if (!blobEndpoint) {
      const protocol = (value(text, 'DefaultEndpointsProtocol') ?? '').toLowerCase();
      if (protocol !== 'https' && protocol !== 'http') throw malformed("Invalid DefaultEndpointsProtocol in the provided Connection String. Expecting 'https' or 'http'");
      const suffix = value(text, 'EndpointSuffix');
      if (!suffix) throw malformed('Invalid EndpointSuffix in the provided Connection String');
      blobEndpoint = `${protocol}://${accountName}.blob.${suffix}`;
    }
    if (!accountName) throw malformed('Invalid AccountName in the provided Connection String');
    if (accountKey.length === 0) throw malformed('Invalid AccountKey in the provided Connection String');
    return { blobEndpoint: endpointUrl(blobEndpoint, malformed), accountName, accountKey, ...(proxyUri ? { proxyUri } : {}) };
  }
  const sas = value(text, 'SharedAccessSignature')?.replace(/^\?/, '');
  if (!blobEndpoint) throw malformed('Invalid BlobEndpoint in the provided SAS Connection String');
  if (!sas) throw malformed('Invalid SharedAccessSignature in the provided SAS Connection String');
  const endpoint = endpointUrl(blobEndpoint, malformed);
  return { blobEndpoint: endpoint, accountName: value(text, 'AccountName') ?? accountNameOf(new URL(endpoint)), sas };
}

function endpointUrl(value: string, malformed: (what: string) => SyncError, field = 'BlobEndpoint'): string {
  try {
    const url = new URL(value);
    if (url.protocol === 'https:' || url.protocol === 'http:') return url.toString();
  } catch {
    // reported below
  }
  throw malformed(`Invalid ${field} in the provided Connection String`);
}

/** The endpoint's URL with the container appended (`/account/container` on an IP-style endpoint). */
function inContainer(endpoint: URL, containerName: string): { containerUrl: string } {
  const url = new URL(endpoint.toString());
  url.search = '';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${encodeURIComponent(containerName)}`;
  return { containerUrl: url.toString() };
}

/** The storage emulators' ports, on which any host is path-style (the SDK's PathStylePorts). */
const PATH_STYLE_PORTS = new Set(['10000', '10001', '10002', '10003', '10004', '10100', '10101', '10102', '10103', '10104', '11000', '11001', '11002', '11003', '11004', '11100', '11101', '11102', '11103', '11104']);

/** Azurite and other IP endpoints carry the account as the first path segment (the SDK's isIpEndpointStyle). */
function isIpStyle(url: URL): boolean {
  const ip = /^.*:.*:.*$|^(localhost|host.docker.internal)(:[0-9]+)?$|^(\d|[1-9]\d|1\d\d|2[0-4]\d|25[0-5])(\.(\d|[1-9]\d|1\d\d|2[0-4]\d|25[0-5])){3}(:[0-9]+)?$/;
  return ip.test(url.host) || (url.port !== '' && PATH_STYLE_PORTS.has(url.port));
}

function accountNameOf(url: URL): string {
  return isIpStyle(url) ? decodeURIComponent(url.pathname.split('/').filter(Boolean)[0] ?? '') : url.hostname.split('.')[0] ?? '';
}

const hasSas = (query: string) => new URLSearchParams(query).has('sig');

function sasExpiryOf(query: URLSearchParams): { sasExpiry?: Date } {
  const se = query.get('se');
  const at = se === null ? undefined : new Date(se);
  return at === undefined || Number.isNaN(at.getTime()) ? {} : { sasExpiry: at };
}

function requireContainer(options: { container?: unknown }): string {
  if (typeof options.container !== 'string' || options.container === '') {
    throw new SyncError('CONFIG', 'azureBlobStore: container is required (the blob container name, for example "backups").');
  }
  return options.container;
}

function parseUrl(value: unknown, option: string): URL {
  let url: URL | undefined;
  try {
    if (typeof value === 'string') url = new URL(value);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new SyncError('CONFIG', `azureBlobStore: ${option} must be an http(s) URL such as https://myaccount.blob.core.windows.net.`);
  }
  return url;
}

function requireHttps(url: URL, option: string): void {
  // The SDK refuses to send bearer tokens over plain http; say so before the first request does.
  if (url.protocol !== 'https:') {
    throw new SyncError('CONFIG', `azureBlobStore: ${option} must use https when authenticating with a TokenCredential (use a connection string or SAS for Azurite over http).`);
  }
}
