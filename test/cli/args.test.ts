/**
 * Command-line parsing and the environment's store settings, as tables: what each command line means,
 * and which one-line usage error (and help pointer) each mistake gives. No processes, no store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError, parseCommandLine } from '../../src/cli/args.ts';
import { selectStore } from '../../src/cli/context.ts';
import { helpPointer } from '../../src/cli/usage.ts';
import { createsContainerFromEnv } from '../../src/store/from-env.ts';

test('command lines and what they mean', () => {
  const cases: Array<[string[], object]> = [
    [['--help'], { command: 'help' }],
    [['help'], { command: 'help' }],
    [['help', 'restore'], { command: 'help', topic: 'restore' }],
    [['restore', '--help'], { command: 'help', topic: 'restore' }],
    [['-h', 'list'], { command: 'help', topic: 'list' }],
    [['--version'], { command: 'version' }],
    [['status', '--version'], { command: 'version' }],
    [['restore', '--if-exists'], { command: 'restore', ifExists: true, force: false, select: { latest: true } }],
    [['restore'], { command: 'restore', ifExists: false }],
    [['list', '--container', 'backups', '--prefix', ''], { command: 'list', container: 'backups', prefix: '' }],
  ];
  for (const [argv, expected] of cases) {
    const parsed = parseCommandLine(argv) as unknown as Record<string, unknown>;
    for (const [key, value] of Object.entries(expected)) assert.deepEqual(parsed[key], value, `${argv.join(' ')}: ${key}`);
  }
});

test('usage errors: one line, and the command they are about (for its help pointer)', () => {
  const cases: Array<[string[], RegExp, string | undefined]> = [
    [['list', '--bogus'], /^unknown option --bogus\.$/, 'list'],
    [['snapshot', '--if-exists'], /^--if-exists does not apply to snapshot\.$/, 'snapshot'],
    [['restore', '--seq'], /^Option '--seq <value>' argument missing$/, 'restore'],
    [['list', '--container', ' '], /^--container needs a value\.$/, 'list'],
    [['list', '--container', 'c', '--backup-dir', 'd'], /--container .* does not apply with --backup-dir/, 'list'],
    [['help', 'nope'], /^no help for "nope"/, undefined],
    [['help', 'list', 'more'], /^unexpected argument "more" after help list\.$/, undefined],
    [[], /^missing command/, undefined],
  ];
  for (const [argv, message, command] of cases) {
    assert.throws(
      () => parseCommandLine(argv),
      (error: unknown) => {
        assert.ok(error instanceof UsageError, `${argv.join(' ')}: ${String(error)}`);
        assert.match(error.message, message);
        assert.ok(!error.message.includes('\n'), `one line: ${JSON.stringify(error.message)}`);
        assert.equal(error.command, command, argv.join(' '));
        return true;
      },
    );
  }
  assert.equal(helpPointer(undefined), 'See "drizzle-libsql-blob --help".');
  assert.equal(helpPointer('restore'), 'See "drizzle-libsql-blob restore --help".');
});

test('AZURE_STORAGE_CREATE_CONTAINER: true/false spellings, anything else is CONFIG', () => {
  for (const value of ['true', 'TRUE', '1', 'yes', ' true ']) assert.equal(createsContainerFromEnv({ AZURE_STORAGE_CREATE_CONTAINER: value }), true, value);
  for (const value of [undefined, '', 'false', '0', 'no']) assert.equal(createsContainerFromEnv({ AZURE_STORAGE_CREATE_CONTAINER: value }), false, String(value));
  assert.throws(() => createsContainerFromEnv({ AZURE_STORAGE_CREATE_CONTAINER: 'on' }), { code: 'CONFIG', message: /AZURE_STORAGE_CREATE_CONTAINER must be true or false; got "on"/ });
});

test('--container replaces AZURE_STORAGE_CONTAINER; without an Azure account it is CONFIG', () => {
  const env = { AZURE_STORAGE_CONNECTION_STRING: 'DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/acct;', AZURE_STORAGE_CONTAINER: 'from-env' };
  assert.equal(selectStore({ container: 'from-flag' }, env).store.location, 'azure://acct/from-flag/app');
  assert.equal(selectStore({}, env).store.location, 'azure://acct/from-env/app');
  assert.equal(selectStore({}, { ...env, AZURE_STORAGE_CREATE_CONTAINER: 'true' }).createsContainer, true);
  assert.equal(selectStore({}, env).createsContainer, false);
  assert.throws(() => selectStore({ container: 'x' }, {}), { code: 'CONFIG', message: /--container names an Azure container, but no Azure account is set/ });
});
