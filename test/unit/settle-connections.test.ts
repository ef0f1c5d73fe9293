/** src/local/settle-connections.ts's decisions, as tables: which descriptors belong to a database, and which forbid replacing it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { blocksReplacing, connectionPaths, openOn } from '../../src/local/settle-connections.ts';

const paths = ['/data/app.db', '/data/app.db-wal'];

const OPEN_ON: Array<{ name: string; targets: string[]; want: string[] }> = [
  { name: 'nothing open', targets: [], want: [] },
  { name: 'the database and its WAL', targets: ['/data/app.db', '/data/app.db-wal'], want: ['/data/app.db', '/data/app.db-wal'] },
  { name: 'a replaced inode', targets: ['/data/app.db (deleted)', '/data/app.db-wal (deleted)'], want: ['/data/app.db (deleted)', '/data/app.db-wal (deleted)'] },
  { name: 'the -shm is not looked at (the checkpointer holds one of its own)', targets: ['/data/app.db-shm', '/data/app.db-shm (deleted)'], want: [] },
  { name: 'the lock file, the sidecar, temp copies and other databases', targets: ['/data/app.db.lock', '/data/app.db.sync.json', '/data/app.db.restore-1', '/data/app.db.snap-2', '/data/other.db', 'socket:[123]', 'anon_inode:[eventfd]'], want: [] },
  { name: 'a file whose name merely starts like it', targets: ['/data/app.db2', '/data/app.db-wal2', '/data/app.db (deleted) '], want: [] },
  { name: 'repeated descriptors are all reported', targets: ['/data/app.db', '/data/app.db', '/dev/null'], want: ['/data/app.db', '/data/app.db'] },
];

for (const c of OPEN_ON) {
  test(`openOn: ${c.name}`, () => {
    assert.deepEqual(openOn(c.targets, paths), c.want);
  });
}

const BLOCKS: Array<{ name: string; open: string[]; want: boolean }> = [
  { name: 'nothing left', open: [], want: false },
  { name: 'only replaced inodes: SQLite sees the file moved and deletes nothing by path', open: ['/data/app.db (deleted)', '/data/app.db-wal (deleted)'], want: false },
  { name: 'the file now at the path', open: ['/data/app.db'], want: true },
  { name: 'its WAL', open: ['/data/app.db (deleted)', '/data/app.db-wal'], want: true },
];

for (const c of BLOCKS) {
  test(`blocksReplacing: ${c.name} -> ${c.want}`, () => {
    assert.equal(blocksReplacing(c.open), c.want);
  });
}

test('connectionPaths: absolute, through the real folder (as /proc spells a descriptor), even for a file not there yet', () => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'dlb-settle-')));
  try {
    symlinkSync(root, join(root, 'link'));
    const real = join(root, 'app.db');
    assert.deepEqual(connectionPaths(join(root, 'link', 'app.db')), [real, `${real}-wal`]);
    assert.deepEqual(connectionPaths(relative(process.cwd(), join(root, 'link', 'app.db'))), [real, `${real}-wal`]);
    assert.deepEqual(connectionPaths('/no/such/folder/app.db'), ['/no/such/folder/app.db', '/no/such/folder/app.db-wal']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
