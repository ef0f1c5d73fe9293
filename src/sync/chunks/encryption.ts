import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { assertKnownKeys } from '../../config-keys.ts';
import { SyncError } from '../../errors.ts';

/**
 * Client-side encryption at rest for chunked snapshots: AES-256-GCM per chunk, so the store only ever
 * holds ciphertext. The configured key (32 bytes) is never used directly: HKDF derives an encryption
 * key, a MAC key for chunk addresses (a plain sha256 address would let the store confirm a guess of a
 * chunk's content) and a key id recorded in the manifest, so a wrong key is named as such instead of
 * looking like corruption.
 */
export type KeyProvider = () => Promise<Buffer | string> | Buffer | string;

export interface EncryptionOptions {
  /** 32 bytes: a Buffer, or a base64 / hex string; or a function returning one (e.g. read from Key Vault). */
  key: Buffer | string | KeyProvider;
}

export interface ChunkKeys {
  encKey: Buffer;
  macKey: Buffer;
  /** Public fingerprint of the key (not the key): stored in the manifest. */
  keyId: string;
}

/** Default env variable for the key when `encryption` is not given in code. */
export const KEY_ENV = 'SNAPSHOT_ENCRYPTION_KEY';

function parseKey(value: Buffer | string, where: string): Buffer {
  let key: Buffer | undefined;
  if (Buffer.isBuffer(value)) key = value;
  else if (typeof value === 'string') {
    const text = value.trim();
    if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
    else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) key = Buffer.from(text.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
  }
  if (!key || key.length !== 32) {
    throw new SyncError(
      'CONFIG',
      `${where} must be a 256-bit key: 32 bytes, as 64 hex characters or 44 base64 characters (generate one with \`openssl rand -base64 32\`).`,
    );
  }
  return key;
}

/**
 * The shape of `encryption`, checked before anything is created or contacted (the key provider is not
 * called here): an object with only `key`, a Buffer, a string or a function; a literal key's length too.
 */
export function checkEncryptionOptions(options: unknown): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new SyncError('CONFIG', 'encryption must be { key }: a 32-byte key, or a function returning one.');
  }
  assertKnownKeys(options, ['key'], 'encryption');
  const { key } = options as { key?: unknown };
  if (key === undefined) throw new SyncError('CONFIG', 'encryption must be { key }: a 32-byte key, or a function returning one.');
  if (!Buffer.isBuffer(key) && typeof key !== 'string' && typeof key !== 'function') {
    throw new SyncError('CONFIG', `encryption.key must be a Buffer, a base64 or hex string, or a function returning one; got ${typeof key}.`);
  }
  if (typeof key !== 'function') parseKey(key, 'encryption.key');
}

/** Resolves the configured key (calling a KeyProvider once) and derives the working keys. */
export async function resolveChunkKeys(options: EncryptionOptions | undefined, env: NodeJS.ProcessEnv = process.env): Promise<ChunkKeys | undefined> {
  let raw: Buffer;
  if (options === undefined) {
    const fromEnv = env[KEY_ENV];
    if (fromEnv === undefined || fromEnv.trim() === '') return undefined;
    raw = parseKey(fromEnv, KEY_ENV);
  } else {
    checkEncryptionOptions(options);
    let value = options.key;
    if (typeof value === 'function') {
      try {
        value = await value();
      } catch (error) {
        throw new SyncError('CONFIG', `encryption.key: the key provider failed: ${(error as Error).message}`, { cause: error });
      }
    }
    raw = parseKey(value, 'encryption.key');
  }
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), `drizzle-libsql-blob ${info}`, 32));
  return { encKey: derive('chunk encryption'), macKey: derive('chunk address'), keyId: derive('key id').subarray(0, 8).toString('hex') };
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

export function encrypt(plain: Buffer, encKey: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', encKey, iv);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

/** Throws when the tag does not verify (wrong key or tampered bytes). */
export function decrypt(sealed: Buffer, encKey: Buffer): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new Error('ciphertext too short');
  const decipher = createDecipheriv('aes-256-gcm', encKey, sealed.subarray(0, IV_BYTES));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
}

export function keyedAddress(plain: Buffer, macKey: Buffer): string {
  return createHmac('sha256', macKey).update(plain).digest('hex');
}
