/**
 * The sidecar's file: every transition overwrites it in place (no temporary file renamed over it, see
 * src/local/sidecar.ts write()), padded to whole 4 KiB blocks so a shorter state never leaves the end
 * of a longer one behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sidecar, readSidecar, sidecarPath } from '../../src/local/sidecar.ts';
import { tempDir } from '../helpers/fixtures.ts';

test('sidecar: each transition overwrites the file in place, padded to 4 KiB; a shorter state reads back whole, nothing else is left in the directory', async (t) => {
  const dir = await tempDir('sidecar-in-place');
  t.after(() => dir.cleanup());
  const dbPath = join(dir.path, 'app.db');
  writeFileSync(dbPath, '');
  const { sidecar } = Sidecar.open(dbPath, 'store-a', { writer: true });
  sidecar.leaseRequested();
  const inode = statSync(sidecarPath(dbPath)).ino;

  // A long state (publishing a key of 200 characters), then a shorter one without it.
  sidecar.publishing({ seq: 7, key: `snapshots/${'k'.repeat(200)}` });
  assert.equal(readSidecar(dbPath)?.publishing?.seq, 7);
  const longer = readFileSync(sidecarPath(dbPath), 'utf8').trimEnd().length;
  sidecar.published({ seq: 7, generation: 'g1' }, false);
  const text = readFileSync(sidecarPath(dbPath), 'utf8');
  assert.ok(text.trimEnd().length < longer, 'the later state is shorter');
  assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(sidecar.state)));
  assert.equal(readSidecar(dbPath)?.seq, 7);
  assert.equal(readSidecar(dbPath)?.publishing, undefined, 'nothing of the longer state is left at the end');
  assert.equal(statSync(sidecarPath(dbPath)).size % 4096, 0);
  assert.equal(statSync(sidecarPath(dbPath)).ino, inode, 'the same file, overwritten (not replaced by a rename)');
  assert.deepEqual(readdirSync(dir.path).sort(), ['app.db', 'app.db.sync.json']);
});

test('sidecar: a state larger than one block grows the file to whole blocks, and a later small one still reads back alone', async (t) => {
  const dir = await tempDir('sidecar-grow');
  t.after(() => dir.cleanup());
  const dbPath = join(dir.path, 'app.db');
  writeFileSync(dbPath, '');
  const { sidecar } = Sidecar.open(dbPath, 'store-b', { writer: false });
  sidecar.publishing({ seq: 1, key: 'x'.repeat(5000) });
  assert.equal(statSync(sidecarPath(dbPath)).size, 8192);
  sidecar.started({ seq: 1, generation: 'g' }, false);
  assert.equal(statSync(sidecarPath(dbPath)).size, 8192, 'never shrinks: nothing to cut off');
  assert.deepEqual(readSidecar(dbPath), JSON.parse(readFileSync(sidecarPath(dbPath), 'utf8')));
  assert.equal(readSidecar(dbPath)?.publishing, undefined);
});
