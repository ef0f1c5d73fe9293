/**
 * applyDeltasToFile (the 'apply-deltas' worker op): a chain's deltas land in order, runs of pages and
 * single pages alike, each cutting (or growing) the file to its size: a page beyond a shrink that no
 * later delta rewrites comes back as zeros, never as the base's old page. Bad input is SNAPSHOT_CORRUPT.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyDeltasToFile, type StoredDelta } from '../../src/sync/chunks/delta-apply.ts';
import { encodeDelta } from '../../src/sync/chunks/delta-codec.ts';
import { resolveChunkKeys } from '../../src/sync/chunks/encryption.ts';
import { isSyncError } from '../../src/errors.ts';
import { tempDir } from '../helpers/fixtures.ts';

const PAGE = 512;
const page = (fill: number) => Buffer.alloc(PAGE, fill);

function delta(pageCount: number, pages: Record<number, number>, keys?: Parameters<typeof encodeDelta>[1]): StoredDelta {
  const pgnos = Object.keys(pages).map(Number).sort((a, b) => a - b);
  const data = Buffer.concat(pgnos.map((p) => page(pages[p]!)));
  const { stored } = encodeDelta({ pageSize: PAGE, pageCount, pgnos: Uint32Array.from(pgnos), data }, keys);
  return { stored, bytes: pageCount * PAGE, label: `test ${pageCount}` };
}

const cases: Array<{ name: string; deltas: () => StoredDelta[]; want: number[] }> = [
  { name: 'one delta: a run and a single page', deltas: () => [delta(4, { 2: 0x22, 3: 0x33 })], want: [1, 0x22, 0x33, 4] },
  { name: 'later deltas win; the file grows', deltas: () => [delta(4, { 2: 0x22 }), delta(6, { 2: 0x2b, 6: 0x66 })], want: [1, 0x2b, 3, 4, 0, 0x66] },
  { name: 'a shrink then a regrow: pages not rewritten since are zeros', deltas: () => [delta(4, { 4: 0x44 }), delta(2, { 1: 0x11 }), delta(4, { 4: 0x4b })], want: [0x11, 2, 0, 0x4b] },
  { name: 'no deltas: the file as it was', deltas: () => [], want: [1, 2, 3, 4] },
];

for (const c of cases) {
  test(`applyDeltasToFile: ${c.name}`, async () => {
    const dir = await tempDir('delta-apply');
    try {
      const path = join(dir.path, 'db');
      await writeFile(path, Buffer.concat([1, 2, 3, 4].map(page)));
      applyDeltasToFile(path, c.deltas(), undefined);
      const got = await readFile(path);
      assert.equal(got.length, c.want.length * PAGE);
      assert.deepEqual(Array.from({ length: c.want.length }, (_, i) => (got.subarray(i * PAGE, (i + 1) * PAGE).every((b) => b === got[i * PAGE]) ? got[i * PAGE] : -1)), c.want);
    } finally {
      await dir.cleanup();
    }
  });
}

test('applyDeltasToFile: sealed deltas need their key; a size that disagrees with the manifest is SNAPSHOT_CORRUPT', async () => {
  const dir = await tempDir('delta-apply');
  try {
    const path = join(dir.path, 'db');
    await writeFile(path, Buffer.concat([1, 2].map(page)));
    const keys = await resolveChunkKeys({ key: Buffer.alloc(32, 7) }, {});
    applyDeltasToFile(path, [delta(2, { 2: 0x22 }, keys)], keys);
    assert.equal((await readFile(path))[PAGE], 0x22);
    const wrongSize = { ...delta(2, { 1: 0x11 }), bytes: 3 * PAGE };
    assert.throws(() => applyDeltasToFile(path, [wrongSize], undefined), (e) => isSyncError(e, 'SNAPSHOT_CORRUPT') && /manifest says/.test((e as Error).message));
  } finally {
    await dir.cleanup();
  }
});
