/** src/local/settle-connections.ts: which descriptors belong to a database and which forbid replacing it (tables), and the settle loop's bound. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { SETTLE_WAITS_MS, blocksReplacing, connectionPaths, openOn, settleBeforeReplacing, settleClosedConnections } from '../../src/local/settle-connections.ts';
import { isCode } from '../helpers/fixtures.ts';

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

test('settleClosedConnections: done at the first look that finds nothing; unconfirmed (not waiting) without /proc', async () => {
  const [db, wal] = connectionPaths('/data/app.db');
  const looks = [[db!, wal!, '/dev/null'], [`${db} (deleted)`], ['/dev/null']];
  let calls = 0;
  const settled = await settleClosedConnections('/data/app.db', () => looks[calls++] ?? []);
  assert.deepEqual({ confirmed: settled.confirmed, open: settled.open, rounds: settled.rounds }, { confirmed: true, open: [], rounds: 3 });

  const blind = await settleClosedConnections('/data/app.db', () => null);
  assert.deepEqual({ confirmed: blind.confirmed, open: blind.open, rounds: blind.rounds }, { confirmed: false, open: [], rounds: 2 });
  await settleBeforeReplacing('/data/app.db', () => null); // cannot tell: the replacement goes ahead
});

test('settleClosedConnections: bounded (~1 s) when a descriptor stays; replacing is refused only over the file now at the path', async () => {
  const [db] = connectionPaths('/data/app.db');
  const stuck = await settleClosedConnections('/data/app.db', () => [db!]);
  assert.equal(stuck.confirmed, false);
  assert.deepEqual(stuck.open, [db]);
  assert.equal(stuck.rounds, SETTLE_WAITS_MS.length);
  assert.ok(stuck.durationMs >= 900 && stuck.durationMs < 5_000, `${stuck.durationMs} ms`);

  await assert.rejects(settleBeforeReplacing('/data/app.db', () => [db!]), isCode('LOCKED'));
  await settleBeforeReplacing('/data/app.db', () => [`${db} (deleted)`]); // an already replaced inode: SQLite sees it moved
});
