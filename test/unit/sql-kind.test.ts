import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWriteStatement, scriptWrites, splitStatements } from '../../src/client/sql-kind.ts';

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
