/**
 * The start-up decision, row by row: every action and every refusal `decideStartup()` can give, from
 * facts alone (no store, no file).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideStartup, leaseRequest, type StartupDecision, type StartupFacts } from '../../src/sync/startup-decision.ts';

const HEAD = { seq: 5, generation: 'g1' };
const manifest = (over: Partial<Extract<StartupFacts['remote'], { kind: 'manifest' }>> = {}): StartupFacts['remote'] => ({
  kind: 'manifest',
  position: HEAD,
  latest: { seq: 5, key: 'snapshots/g1/5' },
  targetDone: false,
  ...over,
});
const sidecar = (over: Partial<NonNullable<StartupFacts['sidecar']>> = {}): StartupFacts['sidecar'] => ({
  position: HEAD,
  dirty: false,
  changedOutside: false,
  cleanClose: true,
  ...over,
});

function facts(over: Partial<StartupFacts> & { mode?: StartupFacts['options']['mode']; role?: StartupFacts['options']['role']; target?: string }): StartupFacts {
  const { mode = 'if-exists', role = 'auto', target, ...rest } = over;
  return {
    dbPath: '/data/app.db',
    location: 'azure://acct/c/p',
    options: { mode, role, target },
    local: { exists: true },
    sidecar: sidecar(),
    remote: manifest(),
    lease: 'held',
    ...rest,
  };
}

type Expect = { action: Exclude<StartupDecision['action'], 'refuse'>; role: 'writer' | 'replica'; position?: unknown; rollback?: boolean } | { refuse: string };

const rows: Array<[string, StartupFacts, Expect]> = [
  // ---- no local file ----
  ['empty store, no file: start empty (writer)', facts({ local: { exists: false }, sidecar: null, remote: manifest({ position: { seq: 0, generation: '' }, latest: null }) }), { action: 'start-empty', role: 'writer', position: 'new' }],
  ['no file: download the latest', facts({ local: { exists: false }, sidecar: null }), { action: 'download', role: 'writer', position: 'store-head' }],
  ['no file, replica: download the latest', facts({ local: { exists: false }, sidecar: null, lease: 'held-by-other' }), { action: 'download', role: 'replica' }],
  ['no file, role replica: download', facts({ local: { exists: false }, sidecar: null, lease: 'not-requested', role: 'replica' }), { action: 'download', role: 'replica' }],
  ['no file, point-in-time: download the target', facts({ local: { exists: false }, sidecar: null, target: 'seq:3' }), { action: 'download', role: 'writer', rollback: true }],
  // ---- local file = the store's latest ----
  ['clean file at the head: keep', facts({}), { action: 'keep', role: 'writer', position: HEAD }],
  ['dirty file at the head: keep and upload', facts({ sidecar: sidecar({ dirty: true }) }), { action: 'keep-and-upload', role: 'writer' }],
  ['file changed outside (migrate) at the head: keep and upload', facts({ sidecar: sidecar({ changedOutside: true }) }), { action: 'keep-and-upload', role: 'writer' }],
  ['unclean last close at the head: keep and upload (checked by a snapshot)', facts({ sidecar: sidecar({ cleanClose: false }) }), { action: 'keep-and-upload', role: 'writer' }],
  ['replica, clean file at the head: keep', facts({ lease: 'held-by-other' }), { action: 'keep', role: 'replica' }],
  ['replica, unclean close at the head: keep (a replica uploads nothing)', facts({ lease: 'held-by-other', sidecar: sidecar({ cleanClose: false }) }), { action: 'keep', role: 'replica' }],
  // ---- local file behind or ahead ----
  ['clean file behind the head: download', facts({ sidecar: sidecar({ position: { seq: 3, generation: 'g1' } }) }), { action: 'download', role: 'writer' }],
  ['dirty file behind the head: DIVERGED', facts({ sidecar: sidecar({ position: { seq: 3, generation: 'g1' }, dirty: true }) }), { refuse: 'DIVERGED' }],
  ['file ahead of the head (store went backwards): keep and upload', facts({ sidecar: sidecar({ position: { seq: 9, generation: 'g1' } }) }), { action: 'keep-and-upload', role: 'writer', position: { seq: 9, generation: 'g1' } }],
  ['replica, file ahead of the head: DIVERGED', facts({ lease: 'held-by-other', sidecar: sidecar({ position: { seq: 9, generation: 'g1' } }) }), { refuse: 'DIVERGED' }],
  // ---- an interrupted restore (moved into place before its fsync and quick_check passed) ----
  ['interrupted restore at the head: download again, never keep', facts({ sidecar: sidecar({ restoring: true }) }), { action: 'download', role: 'writer', position: 'store-head', rollback: false }],
  ['interrupted restore closed cleanly since: still download again', facts({ sidecar: sidecar({ restoring: true, cleanClose: true }) }), { action: 'download', role: 'writer' }],
  ['interrupted restore, replica: download again (not DIVERGED)', facts({ lease: 'held-by-other', sidecar: sidecar({ restoring: true, changedOutside: true }) }), { action: 'download', role: 'replica' }],
  ['interrupted restore, point-in-time asked: download the target', facts({ sidecar: sidecar({ restoring: true }), target: 'seq:3' }), { action: 'download', role: 'writer', rollback: true }],
  ["interrupted restore, restore: 'skip': refuse (never keep it)", facts({ sidecar: sidecar({ restoring: true }), mode: 'skip', remote: { kind: 'not-read' } }), { refuse: 'CONFIG' }],
  ['interrupted restore, store now empty: refuse', facts({ sidecar: sidecar({ restoring: true }), remote: manifest({ position: { seq: 0, generation: '' }, latest: null }) }), { refuse: 'CONFIG' }],
  ['died after publishing, before recording: keep its own snapshot and check it', facts({ sidecar: sidecar({ position: { seq: 4, generation: 'g1' }, publishing: { seq: 5, key: 'snapshots/g1/5' } }) }), { action: 'keep-and-upload', role: 'writer', position: HEAD }],
  ['a publishing note for another snapshot does not count', facts({ sidecar: sidecar({ position: { seq: 4, generation: 'g1' }, dirty: true, publishing: { seq: 5, key: 'snapshots/g1/other' } }) }), { refuse: 'DIVERGED' }],
  // ---- a file without a sidecar ----
  ['file of unknown origin with content, store has a backup: DIVERGED', facts({ sidecar: null, local: { exists: true, hasContent: true } }), { refuse: 'DIVERGED' }],
  ['empty file without a sidecar: download', facts({ sidecar: null, local: { exists: true, hasContent: false } }), { action: 'download', role: 'writer' }],
  ['file with content, store has no snapshot: keep and upload it as the first', facts({ sidecar: null, local: { exists: true, hasContent: true }, remote: manifest({ position: { seq: 0, generation: '' }, latest: null }) }), { action: 'keep-and-upload', role: 'writer', position: 'new' }],
  ['empty file, empty store: keep', facts({ sidecar: null, local: { exists: true, hasContent: false }, remote: manifest({ position: { seq: 0, generation: '' }, latest: null }) }), { action: 'keep', role: 'writer', position: 'new' }],
  // ---- replicas never discard local commits ----
  ['replica (lease held elsewhere), dirty file: DIVERGED', facts({ lease: 'held-by-other', sidecar: sidecar({ dirty: true }) }), { refuse: 'DIVERGED' }],
  ['role replica, dirty file: DIVERGED', facts({ lease: 'not-requested', role: 'replica', sidecar: sidecar({ dirty: true }) }), { refuse: 'DIVERGED' }],
  ['replica, file changed outside: DIVERGED', facts({ lease: 'held-by-other', sidecar: sidecar({ changedOutside: true }) }), { refuse: 'DIVERGED' }],
  ['replica, unknown file with content: DIVERGED', facts({ lease: 'held-by-other', sidecar: null, local: { exists: true, hasContent: true } }), { refuse: 'DIVERGED' }],
  // ---- the lease ----
  ["role 'writer', lease held elsewhere: LEASE_HELD", facts({ role: 'writer', lease: 'held-by-other' }), { refuse: 'LEASE_HELD' }],
  ['point-in-time restore, lease held elsewhere: LEASE_HELD', facts({ target: 'seq:3', lease: 'held-by-other' }), { refuse: 'LEASE_HELD' }],
  ["point-in-time restore with role 'replica': CONFIG", facts({ target: 'seq:3', role: 'replica', lease: 'not-requested' }), { refuse: 'CONFIG' }],
  // ---- the store ----
  ['data but no manifest: MANIFEST_MISSING (nothing replaced or deleted)', facts({ remote: { kind: 'data-without-manifest', objects: 3, example: 'chunks/ab' }, lease: 'not-requested' }), { refuse: 'MANIFEST_MISSING' }],
  ["restore 'required', empty store: NO_BACKUP", facts({ mode: 'required', local: { exists: false }, sidecar: null, remote: { kind: 'empty' }, lease: 'not-requested' }), { refuse: 'NO_BACKUP' }],
  ["restore 'required', manifest without snapshots: NO_BACKUP", facts({ mode: 'required', local: { exists: false }, sidecar: null, remote: manifest({ position: { seq: 0, generation: '' }, latest: null }) }), { refuse: 'NO_BACKUP' }],
  // ---- point-in-time ----
  ['point-in-time over a clean file: download the target', facts({ target: 'seq:3' }), { action: 'download', role: 'writer', rollback: true }],
  ['point-in-time over a dirty file: DIVERGED', facts({ target: 'seq:3', sidecar: sidecar({ dirty: true }) }), { refuse: 'DIVERGED' }],
  ['point-in-time over an unknown file with content: DIVERGED', facts({ target: 'seq:3', sidecar: null, local: { exists: true, hasContent: true } }), { refuse: 'DIVERGED' }],
  ['point-in-time already recorded in the manifest: not again (keep)', facts({ target: 'seq:3', remote: manifest({ targetDone: true }) }), { action: 'keep', role: 'writer', rollback: false }],
  // ---- restore: 'skip' ----
  ["skip, no file: start empty", facts({ mode: 'skip', local: { exists: false }, sidecar: null, remote: { kind: 'not-read' } }), { action: 'start-empty', role: 'writer' }],
  ["skip, clean file: keep", facts({ mode: 'skip', remote: { kind: 'not-read' } }), { action: 'keep', role: 'writer', position: HEAD }],
  ["skip, dirty file: keep and upload", facts({ mode: 'skip', remote: { kind: 'not-read' }, sidecar: sidecar({ dirty: true }) }), { action: 'keep-and-upload', role: 'writer' }],
  ["skip, unknown file with content: keep and upload as a new generation", facts({ mode: 'skip', remote: { kind: 'not-read' }, sidecar: null, local: { exists: true, hasContent: true } }), { action: 'keep-and-upload', role: 'writer', position: 'new' }],
  ["skip as a replica follows the store: behind → download", facts({ mode: 'skip', lease: 'held-by-other', sidecar: sidecar({ position: { seq: 2, generation: 'g1' } }) }), { action: 'download', role: 'replica' }],
];

for (const [name, input, expected] of rows) {
  test(`decideStartup: ${name}`, () => {
    const decision = decideStartup(input);
    if ('refuse' in expected) {
      assert.equal(decision.action, 'refuse', JSON.stringify(decision));
      assert.equal((decision as { code: string }).code, expected.refuse);
      assert.ok((decision as { message: string }).message.length > 40, 'the message names what to do');
      return;
    }
    assert.notEqual(decision.action, 'refuse', JSON.stringify(decision));
    const d = decision as Exclude<StartupDecision, { action: 'refuse' }>;
    assert.equal(d.action, expected.action);
    assert.equal(d.role, expected.role);
    if (expected.position !== undefined) assert.deepEqual(d.position, expected.position);
    if (expected.rollback !== undefined) assert.equal(d.rollback, expected.rollback);
    assert.match(d.reason, new RegExp(`^${d.role}: `), 'the reason starts with the role');
  });
}

test('decideStartup: the table covers every action and every refusal code', () => {
  const seen = new Set(rows.map(([, f]) => decideStartup(f)).map((d) => (d.action === 'refuse' ? `refuse:${d.code}` : d.action)));
  for (const outcome of ['download', 'keep', 'keep-and-upload', 'start-empty', 'refuse:DIVERGED', 'refuse:LEASE_HELD', 'refuse:NO_BACKUP', 'refuse:MANIFEST_MISSING', 'refuse:CONFIG']) {
    assert.ok(seen.has(outcome), `no row gives ${outcome}`);
  }
});

test('leaseRequest: never on a store with data but no manifest (taking it would create one), nor for a required restore of an empty store', () => {
  const data = { kind: 'data-without-manifest', objects: 1, example: 'x' } as const;
  assert.equal(leaseRequest('auto', data, 'if-exists'), false);
  assert.equal(leaseRequest('writer', { kind: 'empty' }, 'required'), false);
  assert.equal(leaseRequest('writer', { kind: 'empty' }, 'if-exists'), true);
  assert.equal(leaseRequest('replica', manifest(), 'if-exists'), false);
  assert.equal(leaseRequest('auto', manifest(), 'required'), true);
});
