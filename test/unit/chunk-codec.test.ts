import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chunkAddress, decodeChunk, encodeChunk, storedDigest } from '../../src/sync/chunks/chunk-codec.ts';
import { decodeChunkIndex, encodeChunkIndex, type ChunkIndex } from '../../src/sync/chunks/chunk-index.ts';
import { resolveChunkKeys } from '../../src/sync/chunks/encryption.ts';
import { SyncError } from '../../src/errors.ts';

const corrupt = (error: unknown) => error instanceof SyncError && error.code === 'SNAPSHOT_CORRUPT';

test("decodeChunk with the index's digest: matching stored bytes are decoded without the address check; anything else is judged by its address", async () => {
  const keys = await resolveChunkKeys({ key: randomBytes(32) });
  for (const k of [undefined, keys]) {
    const plain = Buffer.concat([Buffer.from('page '.repeat(20_000)), randomBytes(4096)]);
    const other = Buffer.from(plain).fill(7, 0, 10);
    const stored = encodeChunk(plain, k);
    const address = chunkAddress(plain, k);
    const digest = storedDigest(stored);
    const wrongDigest = storedDigest(Buffer.from('something else'));
    // Digest matches: decoded, and the address is not consulted (a wrong one does not matter: the index
    // that names both is authenticated by the manifest, and names what was uploaded).
    assert.ok(decodeChunk(stored, address, k, 'x', digest).equals(plain));
    assert.ok(decodeChunk(stored, chunkAddress(other, k), k, 'x', digest).equals(plain));
    // No digest, an empty one (unknown to its writer) or a stale one (the chunk was uploaded again with
    // another encoding): verified by its address, as without digests.
    for (const d of [undefined, '', wrongDigest]) {
      assert.ok(decodeChunk(stored, address, k, 'x', d).equals(plain), `digest ${d}`);
      assert.throws(() => decodeChunk(stored, chunkAddress(other, k), k, 'x', d), corrupt, `digest ${d}: wrong content`);
    }
    // Another encoding of the same content (re-uploaded) under an old digest: still accepted by address.
    const reencoded = k ? encodeChunk(plain, k) : Buffer.concat([Buffer.from([1, 0]), plain]);
    assert.notEqual(storedDigest(reencoded), digest);
    assert.ok(decodeChunk(reencoded, address, k, 'x', digest).equals(plain));
    // A flipped byte under the digest: fails its digest, then its decode or its address.
    const flipped = Buffer.from(stored);
    flipped[flipped.length - 5]! ^= 0x10;
    assert.throws(() => decodeChunk(flipped, address, k, 'x', digest), corrupt);
  }
});

test('decodeChunkIndex: digests are optional, parallel to chunks, each a sha256 or empty', () => {
  const a = 'a'.repeat(64);
  const base: ChunkIndex = { format: 1, bytes: 8192, pageSize: 4096, chunkSize: 4096, chunks: [a, a], stored: [10, 10] };
  const read = (extra: object) => decodeChunkIndex(encodeChunkIndex({ ...base, ...extra } as ChunkIndex), 'idx');
  assert.equal(read({}).digests, undefined);
  assert.deepEqual(read({ digests: ['f'.repeat(64), ''] }).digests, ['f'.repeat(64), '']);
  for (const digests of [['f'.repeat(64)], 'f'.repeat(64), ['F'.repeat(64), ''], ['f'.repeat(63), ''], [1, 2]]) {
    assert.throws(() => read({ digests }), (e: unknown) => corrupt(e) && /bad digest list/.test((e as Error).message), JSON.stringify(digests));
  }
});
