import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WriteVerdictCache, isWriteStatement, leadingVerbVerdict, scriptWrites, splitStatements } from '../../src/client/sql-kind.ts';

test('classifies reads and writes by SQL text', () => {
  const writes = [
    'insert into t values (1)',
    '  -- comment\n UPDATE t SET a = 1',
    '/* c */ DELETE FROM t',
    'REPLACE INTO t VALUES (1)',
    'CREATE TABLE x (a)',
    'create index i on t(a)',
    'DROP TABLE x',
    'ALTER TABLE t ADD COLUMN b',
    'WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c',
    'with recursive c(x) as (select 1) delete from t where a in (select x from c)',
    'PRAGMA user_version = 3',
    'ANALYZE',
    'something_unknown',
  ];
  const reads = [
    'SELECT * FROM t',
    "select 'insert into t' as s",
    'select "delete" from t',
    'WITH c AS (SELECT 1) SELECT * FROM c',
    'WITH c AS (SELECT (SELECT 1)) SELECT * FROM c WHERE x IN (SELECT 1)',
    'EXPLAIN QUERY PLAN SELECT 1',
    'PRAGMA table_info(t)',
    'PRAGMA foreign_keys = ON',
    'VACUUM',
    'BEGIN',
    'COMMIT',
    '',
    '   ',
  ];
  for (const sql of writes) assert.equal(isWriteStatement(sql), true, sql);
  for (const sql of reads) assert.equal(isWriteStatement(sql), false, sql);
});

test('splits scripts on top-level semicolons only', () => {
  assert.deepEqual(splitStatements("select ';'; insert into t values ('a;b');\n-- x;\n"), ["select ';'", " insert into t values ('a;b')"]);
  assert.equal(scriptWrites('select 1; select 2;'), false);
  assert.equal(scriptWrites('select 1; update t set a = 1;'), true);
});

test('leadingVerbVerdict: decides drizzle\'s SELECT/INSERT/UPDATE/DELETE from their first word alone, as isWriteStatement does; leaves everything else to the cache and the parser', () => {
  const table: Array<[string, boolean | undefined]> = [
    ['select "id", "name" from "documents" where "id" = ?', false],
    ['SELECT * FROM t', false],
    ["select 'insert into t' as s", false],
    ['select\n1', false],
    ['select*from t', false],
    ['insert into "documents" ("id") values (?)', true],
    ['INSERT OR REPLACE INTO t VALUES (1)', true],
    ['update "documents" set "version" = "version" + 1', true],
    ['Delete from t', true],
    ['delete\tfrom t', true],
    ['selected_rows', undefined], // not a verb: the parser calls it an unknown statement (a write)
    ['updates', undefined],
    ['insert', undefined], // too short to tell without the parser
    [' select 1', undefined], // leading space: the parser skips it
    ['-- c\nselect 1', undefined],
    ['WITH c AS (SELECT 1) DELETE FROM t', undefined],
    ['PRAGMA user_version = 3', undefined],
    ['select$x', undefined],
    ['insert_log', undefined],
  ];
  for (const [sql, expected] of table) {
    assert.equal(leadingVerbVerdict(sql), expected, sql);
    if (expected !== undefined) assert.equal(isWriteStatement(sql), expected, `agrees with isWriteStatement: ${sql}`);
  }
  // The cache answers the same with or without the fast path.
  const cache = new WriteVerdictCache();
  for (const [sql] of table) assert.equal(cache.isWrite(sql), isWriteStatement(sql), sql);
});
