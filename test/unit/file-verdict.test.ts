/** fileVerdict (src/local/file-verdict.ts): what `status` says about the local file, as a table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileVerdict, type FileVerdict } from '../../src/local/file-verdict.ts';
import type { FileFingerprint, SidecarState } from '../../src/local/sidecar.ts';

const closed: FileFingerprint = { dbBytes: 8192, dbMtimeMs: 1_700_000_000_000, walBytes: 0 };
const state = (dirty: boolean, fingerprint: FileFingerprint | null): SidecarState => ({ format: 1, store: 'dir:/x', generation: 'g', seq: 3, dirty, fingerprint });

const CASES: Array<{ name: string; inUse: boolean; state: SidecarState; current: FileFingerprint | null; want: FileVerdict }> = [
  { name: 'closed cleanly, untouched', inUse: false, state: state(false, closed), current: { ...closed }, want: 'clean' },
  { name: 'written by another program (size)', inUse: false, state: state(false, closed), current: { ...closed, dbBytes: 12288 }, want: 'changed-outside' },
  { name: 'written by another program (mtime only)', inUse: false, state: state(false, closed), current: { ...closed, dbMtimeMs: closed.dbMtimeMs + 1 }, want: 'changed-outside' },
  { name: 'a WAL left by another program', inUse: false, state: state(false, closed), current: { ...closed, walBytes: 4152 }, want: 'changed-outside' },
  { name: 'the file is gone', inUse: false, state: state(false, closed), current: null, want: 'changed-outside' },
  { name: 'killed with unsaved commits', inUse: false, state: state(true, null), current: closed, want: 'dirty' },
  { name: 'dirty wins over a fingerprint', inUse: false, state: state(true, closed), current: closed, want: 'dirty' },
  { name: 'killed with nothing pending: not closed cleanly', inUse: false, state: state(false, null), current: closed, want: 'unverified' },
  { name: 'a live holder: its sidecar is its own view', inUse: true, state: state(false, null), current: closed, want: 'in-use' },
  { name: 'a live holder with pending commits', inUse: true, state: state(true, null), current: closed, want: 'in-use' },
];

for (const c of CASES) {
  test(`fileVerdict: ${c.name} -> ${c.want}`, () => {
    assert.equal(fileVerdict({ inUse: c.inUse, state: c.state, current: c.current }), c.want);
  });
}
