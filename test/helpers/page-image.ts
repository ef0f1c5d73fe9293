import * as libsql from '@libsql/client/sqlite3';
import { openPageImage } from '../../src/sync/chunks/page-image.ts';
import { chunkAddress } from '../../src/sync/chunks/chunk-codec.ts';

/**
 * Every chunk's address of a database file's page image, as a whole-file read gives it (its own read
 * transaction, no fold): what a chunk index of that file must list, and a page-for-page fingerprint.
 */
export async function wholeFileAddresses(dbPath: string, chunkSize: number): Promise<string[]> {
  const image = await openPageImage(Promise.resolve(libsql), dbPath, chunkSize);
  try {
    const addresses: string[] = [];
    for await (const { data } of image.chunks()) addresses.push(chunkAddress(data, undefined));
    return addresses;
  } finally {
    await image.close({ fold: false });
  }
}
