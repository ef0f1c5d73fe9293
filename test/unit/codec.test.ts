import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CODECS, Lz4Decoder, compressFile, decompressFile } from '../../src/sync/codec.ts';
import { SyncError } from '../../src/errors.ts';
import { tempDir } from '../helpers/fixtures.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
let raw: Buffer;
before(async () => {
  dir = await tempDir('codec');
  // 2.5 MiB: several 1 MiB blocks plus a partial one; half compressible text, half random.
  raw = Buffer.concat([Buffer.from('page '.repeat(262_144)), randomBytes(1_310_720)]);
  await writeFile(join(dir.path, 'raw'), raw);
});
after(() => dir.cleanup());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const isCorrupt = (e: unknown) => e instanceof SyncError && e.code === 'SNAPSHOT_CORRUPT';

for (const codec of CODECS) {
  test(`${codec}: round trip preserves bytes and reports sizes and sha256`, async () => {
    const packed = join(dir.path, `p.${codec}`);
    const out = join(dir.path, `o.${codec}`);
    const c = await compressFile(join(dir.path, 'raw'), packed, codec);
    assert.equal(c.rawBytes, raw.length);
    assert.equal(c.sha256, sha(raw));
    assert.equal(c.compressedBytes, (await readFile(packed)).length);
    const d = await decompressFile(packed, out, codec);
    assert.deepEqual(d, c);
    assert.ok((await readFile(out)).equals(raw));
  });
}

test('lz4: truncation anywhere and trailing garbage are SNAPSHOT_CORRUPT', async () => {
  const packed = await readFile(join(dir.path, 'p.lz4'));
  for (const cut of [3, 8, 12, 100, Math.floor(packed.length / 2), packed.length - 8, packed.length - 1]) {
    await writeFile(join(dir.path, 'cut'), packed.subarray(0, cut));
    await assert.rejects(decompressFile(join(dir.path, 'cut'), join(dir.path, 'cut.out'), 'lz4'), isCorrupt, `cut at ${cut}`);
  }
  await writeFile(join(dir.path, 'extra'), Buffer.concat([packed, Buffer.from('x')]));
  await assert.rejects(decompressFile(join(dir.path, 'extra'), join(dir.path, 'extra.out'), 'lz4'), isCorrupt);
});

test('lz4 decoder gives the same blocks whatever the chunking of its input', async () => {
  const packed = await readFile(join(dir.path, 'p.lz4'));
  for (const size of [1, 7, 4096, 1_000_003]) {
    const decoder = new Lz4Decoder('test');
    const parts: Buffer[] = [];
    for (let i = 0; i < packed.length; i += size) parts.push(...decoder.push(packed.subarray(i, i + size)));
    decoder.finish();
    assert.ok(Buffer.concat(parts).equals(raw), `chunk size ${size}`);
  }
});

test('gzip: a damaged stream is SNAPSHOT_CORRUPT', async () => {
  const packed = await readFile(join(dir.path, 'p.gzip'));
  await writeFile(join(dir.path, 'g'), packed.subarray(0, packed.length - 20));
  await assert.rejects(decompressFile(join(dir.path, 'g'), join(dir.path, 'g.out'), 'gzip'), isCorrupt);
});
