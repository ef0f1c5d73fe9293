/**
 * Blob requests over node:http(s), signed as the SDK signs them, for what a cold start waits on (the
 * probe, the manifest and chunk index reads, the writer lease, every chunk of a restore: one ranged GET
 * each) and for what a snapshot does on the app's thread for each chunk (a PUT of its body) and once
 * (the manifest's conditional PUT), listings and deletes included. The SDK's pipeline (a dozen policies, header objects, a retriable stream wrapper per body,
 * and on its first request the lazy load of Node's undici for a FormData check, ~25 ms) costs per
 * request about what receiving a 2 MiB body costs. Measured on this machine, 16 blobs of 2 MiB, 8 at a
 * time from Azurite, medians of 8 interleaved rounds: SDK 121 ms, this 62 ms, with a quarter less CPU
 * in the thread a restore shares with its decoders. Whole-file uploads (full mode: blocks and a block
 * list) stay with the SDK.
 *
 * Same semantics as the SDK calls it replaces: the SDK's service version; SharedKey, SAS or bearer-token
 * authorization from the client's own credential; conditions as headers; a few quick retries of a
 * failed request or a broken body (the SDK's `maxTries: 3`); failures thrown in the SDK's shape (`name`
 * 'RestError', `statusCode`, `code` = the service's x-ms-error-code or the network error's code), so the
 * store's one error translator maps both paths alike.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Authorization } from './azure-target.ts';

/** The service version the SDK in use sends (@azure/storage-blob 12.32); Azurite checks it. */
const SERVICE_VERSION = '2026-04-06';
const STORAGE_SCOPE = 'https://storage.azure.com/.default';
/** Attempts per request, with the SDK's first delays between them. */
const ATTEMPTS = 3;
const RETRY_DELAYS_MS = [200, 800];
/** A token is renewed this long before it expires, so no request carries one that expires in flight. */
const TOKEN_MARGIN_MS = 2 * 60_000;
/** Proxy settings the SDK honours and this path does not: when any is set, the SDK does everything. */
const PROXY_VARIABLES = ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY', 'https_proxy', 'http_proxy', 'all_proxy'];

export interface RestRequest {
  method: 'GET' | 'PUT' | 'DELETE';
  /** The blob's or container's URL, with its SAS query when the store has one. */
  url: string;
  /** Request headers, names lower-case: x-ms-* and the conditional ones (if-match, if-none-match). */
  headers?: Record<string, string>;
  /** A PUT's body (none: an empty body). Not copied: the caller keeps it unchanged until the promise settles. */
  body?: Buffer;
  /** Statuses that mean success; any other is thrown as a RestError. */
  expect: readonly number[];
  signal: AbortSignal;
  /** Called as bytes arrive (the caller's stall watchdog). */
  onProgress?: () => void;
}

export interface RestResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RangeRequest {
  offset: number;
  count: number;
  /** Only from this version of the blob (412 otherwise). */
  ifMatch?: string;
  signal: AbortSignal;
  onProgress?: () => void;
}

export interface RangeResponse {
  /** The whole blob's size (from Content-Range). */
  size: number;
  etag: string | undefined;
  /** Exactly the bytes asked for (fewer only at the blob's end). */
  body: Buffer;
}

export interface AzureRest {
  send(request: RestRequest): Promise<RestResponse>;
  getRange(blobUrl: string, request: RangeRequest): Promise<RangeResponse>;
}

/**
 * Requests authorized as the store is (a shared key, a SAS in the URLs, or a token credential).
 * Undefined when a proxy is configured, which the SDK honours and this path does not: the caller then
 * uses the SDK for everything.
 */
export function azureRest(authorization: Authorization, env: NodeJS.ProcessEnv = process.env): AzureRest | undefined {
  if (PROXY_VARIABLES.some((name) => env[name])) return undefined;
  const authorize = authorizer(authorization);
  // Own keep-alive agents (idle sockets do not hold the process open): as many sockets as a restore has
  // ranges in flight, reused across chunks.
  const agents = { 'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }), 'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }) };
  const send = async (request: RestRequest): Promise<RestResponse> => {
    const url = new URL(request.url);
    const agent = agents[url.protocol as keyof typeof agents];
    if (!agent) throw restError(`unsupported protocol ${url.protocol}`, { code: 'ERR_INVALID_PROTOCOL' });
    for (let attempt = 1; ; attempt++) {
      try {
        const headers = { 'x-ms-date': new Date().toUTCString(), 'x-ms-version': SERVICE_VERSION, ...request.headers, ...(request.method === 'PUT' ? { 'content-length': String(request.body?.length ?? 0) } : {}) };
        return await sendOnce(url, agent, request, { ...headers, ...(await authorize(request.method, url, headers, request.signal)) });
      } catch (error) {
        if (attempt >= ATTEMPTS || !retryable(error) || request.signal.aborted) throw error;
        await delay(RETRY_DELAYS_MS[attempt - 1]!, request.signal);
      }
    }
  };
  return {
    send,
    async getRange(blobUrl, { offset, count, ifMatch, signal, onProgress }) {
      const { headers, body } = await send({
        method: 'GET',
        url: blobUrl,
        headers: { 'x-ms-range': `bytes=${offset}-${offset + count - 1}`, ...(ifMatch ? { 'if-match': ifMatch } : {}) },
        expect: [200, 206],
        signal,
        ...(onProgress ? { onProgress } : {}),
      });
      const size = totalSize(header(headers['content-range'])) ?? Number(headers['content-length']);
      if (!Number.isSafeInteger(size) || body.length > count) {
        throw restError(`unexpected response for bytes ${offset}+${count}: ${body.length} bytes, Content-Range ${headers['content-range']}`, { code: 'ECONNRESET' });
      }
      return { size, etag: header(headers['etag']), body };
    },
  };
}

type Authorize = (method: string, url: URL, headers: Record<string, string>, signal: AbortSignal) => Promise<Record<string, string>>;

function authorizer(authorization: Authorization): Authorize {
  switch (authorization.kind) {
    case 'sharedKey': {
      const { accountName, accountKey } = authorization;
      return async (method, url, headers) => {
        const signature = createHmac('sha256', accountKey).update(stringToSign(method, accountName, url, headers), 'utf8').digest('base64');
        return { authorization: `SharedKey ${accountName}:${signature}` };
      };
    }
    case 'token': {
      const { credential } = authorization;
      let cached: { token: string; expiresOnTimestamp: number } | null = null;
      return async (_method, _url, _headers, signal) => {
        if (!cached || cached.expiresOnTimestamp - TOKEN_MARGIN_MS < Date.now()) {
          cached = await credential.getToken(STORAGE_SCOPE, { abortSignal: signal });
          if (!cached) throw Object.assign(new Error('The credential returned no token for Azure Storage.'), { name: 'CredentialUnavailableError' });
        }
        return { authorization: `Bearer ${cached.token}` };
      };
    }
    case 'sas':
      return async () => ({}); // the SAS is in the URL's query
  }
}

/**
 * SharedKey string-to-sign (Blob service, version 2009-09-19 and later): the verb, eleven standard
 * headers (Content-Length empty when zero), the x-ms- headers sorted, then `/account/path` and the
 * query's parameters sorted, names lower-cased.
 * https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
 */
export function stringToSign(method: string, account: string, url: URL, headers: Record<string, string>): string {
  const h = (name: string) => headers[name] ?? '';
  const length = h('content-length') === '0' ? '' : h('content-length');
  const standard = [h('content-encoding'), h('content-language'), length, h('content-md5'), h('content-type'), h('date'), h('if-modified-since'), h('if-match'), h('if-none-match'), h('if-unmodified-since'), h('range')];
  const msHeaders = Object.keys(headers)
    .filter((name) => name.startsWith('x-ms-'))
    .sort()
    .map((name) => `${name}:${headers[name]!.trim()}\n`)
    .join('');
  const params = new Map<string, string[]>();
  for (const [name, value] of url.searchParams) params.set(name.toLowerCase(), [...(params.get(name.toLowerCase()) ?? []), value]);
  const query = [...params.keys()]
    .sort()
    .map((name) => `\n${name}:${params.get(name)!.sort().join(',')}`)
    .join('');
  return `${method}\n${standard.join('\n')}\n${msHeaders}/${account}${url.pathname}${query}`;
}

function sendOnce(url: URL, agent: http.Agent, request: RestRequest, headers: Record<string, string>): Promise<RestResponse> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<RestResponse>((resolve, reject) => {
    const req = transport.request(url, { method: request.method, headers, agent, signal: request.signal }, (res) => {
      const status = res.statusCode ?? 0;
      const announced = Number(res.headers['content-length']);
      // Copied into one buffer of the announced size as the parts arrive: each network part is dead at once.
      const sized = Number.isSafeInteger(announced) && announced >= 0;
      const body = sized ? Buffer.allocUnsafeSlow(announced) : undefined;
      const parts: Buffer[] = [];
      let filled = 0;
      res.on('data', (part: Buffer) => {
        if (body) {
          if (filled + part.length > body.length) return void res.destroy(restError(`more than the ${body.length} bytes announced`, { code: 'ECONNRESET' }));
          part.copy(body, filled);
        } else {
          parts.push(part);
        }
        filled += part.length;
        request.onProgress?.();
      });
      res.on('error', (error) => reject(networkError(error)));
      res.on('aborted', () => reject(restError('the response was cut off', { code: 'ECONNRESET' })));
      res.on('end', () => {
        if (body && filled !== body.length) return reject(restError(`the body ended at byte ${filled} of ${body.length}`, { code: 'ECONNRESET' }));
        const whole = body ?? Buffer.concat(parts);
        if (request.expect.includes(status)) return resolve({ status, headers: res.headers, body: whole });
        const code = header(res.headers['x-ms-error-code']);
        const message = /<Message>([^<]*)<\/Message>/.exec(whole.toString('utf8'))?.[1]?.split('\n')[0] ?? res.statusMessage ?? `HTTP ${status}`;
        reject(restError(message, { statusCode: status, ...(code ? { code } : {}) }));
      });
    });
    req.on('error', (error) => reject(networkError(error)));
    req.end(request.body);
  });
}

/**
 * A List Blobs page (the service's XML) read without an XML library: the name, size and last-modified
 * time of each blob, and the marker of the next page. Names are XML-escaped, or URL-encoded when the
 * service says `Encoded="true"`.
 */
export function parseBlobList(xml: Buffer): { blobs: Array<{ name: string; size: number; lastModified: Date }>; nextMarker: string } {
  const text = xml.toString('utf8');
  const blobs: Array<{ name: string; size: number; lastModified: Date }> = [];
  for (const [, blob] of text.matchAll(/<Blob>([\s\S]*?)<\/Blob>/g)) {
    const name = /<Name( Encoded="true")?>([^<]*)<\/Name>/.exec(blob!);
    const size = /<Content-Length>(\d+)<\/Content-Length>/.exec(blob!)?.[1];
    const modified = /<Last-Modified>([^<]*)<\/Last-Modified>/.exec(blob!)?.[1];
    if (!name || size === undefined || modified === undefined) throw restError('The service returned a blob listing this client cannot read.', { code: 'ECONNRESET' });
    blobs.push({ name: name[1] ? decodeURIComponent(unescapeXml(name[2]!)) : unescapeXml(name[2]!), size: Number(size), lastModified: new Date(modified) });
  }
  return { blobs, nextMarker: unescapeXml(/<NextMarker>([^<]*)<\/NextMarker>/.exec(text)?.[1] ?? '') };
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, entity: string) => {
    if (entity[0] === '#') return String.fromCodePoint(entity[1] === 'x' ? Number.parseInt(entity.slice(2), 16) : Number(entity.slice(1)));
    return ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[entity]!;
  });
}

/** The SDK's HTTP error or ours, from whichever build threw it (`instanceof` would tie it to one). */
export function isRestError(error: unknown): error is Error & { statusCode?: number; code?: string; details?: unknown } {
  return error instanceof Error && error.name === 'RestError';
}

/** The blob's full size from a ranged response's `Content-Range: bytes 0-99/1234`. */
export function totalSize(contentRange: string | undefined): number | undefined {
  const match = contentRange?.match(/\/(\d+)$/);
  return match ? Number(match[1]) : undefined;
}

export function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The SDK's error shape (what the store's translator reads): name, statusCode, code. */
function restError(message: string, fields: { statusCode?: number; code?: string }): Error {
  return Object.assign(new Error(message), { name: 'RestError', ...fields, details: fields.code ? { errorCode: fields.code } : undefined });
}

function networkError(error: Error & { code?: string }): Error {
  if (error.name === 'AbortError' || error.name === 'RestError') return error;
  return restError(error.message, { code: error.code ?? 'ECONNRESET' });
}

function retryable(error: unknown): boolean {
  if (!isRestError(error)) return false;
  const { statusCode } = error;
  return statusCode === undefined || statusCode === 408 || statusCode === 429 || statusCode >= 500;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });
}
