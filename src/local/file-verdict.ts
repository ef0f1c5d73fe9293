/**
 * What the local database file's sidecar and the file itself say about it, for `status`: a pure
 * decision over the sidecar, the file's current fingerprint and whether a process holds the file.
 *
 * The sidecar's `fingerprint` (size, mtime, WAL size) is taken at a clean close; a run clears it. So
 * when nobody holds the file: a fingerprint that no longer matches means another program wrote to the
 * file since (drizzle-kit migrate, sqlite3, a copy), and no fingerprint at all means the last run did
 * not close cleanly. Either way the file may hold commits the store lacks: `restore --force` would
 * throw them away. Start-up (src/sync/startup.ts) reaches the same conclusions and uploads the file.
 */
import { sameFingerprint, type FileFingerprint, type SidecarState } from './sidecar.ts';

export type FileVerdict =
  /** A process holds the file: the sidecar is that process's live view, not a verdict on the file. */
  | 'in-use'
  /** Commits the store has not seen yet (written through this library). */
  | 'dirty'
  /** Written by another program since this library closed it cleanly. */
  | 'changed-outside'
  /** The last run did not close it cleanly (killed): it may have changed unseen. */
  | 'unverified'
  /** As this library left it: matches the sidecar's seq. */
  | 'clean';

export function fileVerdict(input: { inUse: boolean; state: SidecarState; current: FileFingerprint | null }): FileVerdict {
  const { inUse, state, current } = input;
  if (inUse) return 'in-use';
  if (state.dirty) return 'dirty';
  if (state.fingerprint === null) return 'unverified';
  return sameFingerprint(state.fingerprint, current) ? 'clean' : 'changed-outside';
}

/** What a person reads: a short label, and what it means and what to do (null for 'clean'). */
export function describeVerdict(verdict: FileVerdict): { label: string; advice: string | null } {
  switch (verdict) {
    case 'in-use':
      return { label: 'in use', advice: 'the process holding it owns it: (dirty) means commits it has not uploaded yet, and it uploads them itself' };
    case 'dirty':
      return { label: 'dirty: holds commits not in the store yet', advice: 'the next start (or `snapshot`) uploads them: take a snapshot before any restore --force' };
    case 'changed-outside':
      return {
        label: 'changed outside this library',
        advice: 'written by another program since the last clean close (e.g. drizzle-kit migrate): take a snapshot before any restore --force',
      };
    case 'unverified':
      return { label: 'not closed cleanly', advice: 'the last run did not close it cleanly, so it may hold changes the store lacks: take a snapshot before any restore --force' };
    case 'clean':
      return { label: 'clean', advice: null };
  }
}
