/**
 * `status`: the store's manifest, latest snapshot, retention and writer lease, and the local file: its
 * sidecar, whether a process holds it, and whether it changed since this library last closed it.
 *
 * Never takes the file lock: it must run beside a live app. It only *reports* the holder ("in use by
 * pid N"), by a read that a holder's lock refuses at once (src/local/file-lock.ts).
 */
import { existsSync, statSync } from 'node:fs';
import { describeHolder, inspectFileLock, type LockHolder } from '../local/file-lock.ts';
import { describeVerdict, fileVerdict, type FileVerdict } from '../local/file-verdict.ts';
import { MANIFEST_KEY, latestSnapshot } from '../sync/manifest.ts';
import { fingerprint, readSidecar, sidecarPath, type SidecarState } from '../local/sidecar.ts';
import type { CliContext } from './context.ts';
import { formatAge, formatBytes } from './format.ts';
import { readRemote } from './remote.ts';

interface LocalReport {
  path: string;
  exists: boolean;
  bytes: number | null;
  /** The sidecar (`<db>.sync.json`), or null when there is none (or it is unreadable). */
  state: SidecarState | null;
  /** The sidecar names this store (otherwise the library treats the file as of unknown origin). */
  sameStore: boolean | null;
  /** A process holds the file (the app, or a CLI command): who, as it wrote itself down (null: not written yet). */
  inUse: { holder: LockHolder | null } | null;
  /** What the sidecar and the file say together (null without a sidecar): only 'clean' means restore --force loses nothing local. */
  verdict: FileVerdict | null;
}

async function localReport(dbPath: string, location: string): Promise<LocalReport> {
  const exists = existsSync(dbPath);
  const state = exists ? readSidecar(dbPath) : null;
  const lock = await inspectFileLock(dbPath);
  const inUse = lock.held ? { holder: lock.holder } : null;
  const verdict = state ? fileVerdict({ inUse: inUse !== null, state, current: fingerprint(dbPath) }) : null;
  return { path: dbPath, exists, bytes: exists ? statSync(dbPath).size : null, state, sameStore: state ? state.store === location : null, inUse, verdict };
}

export async function status(ctx: CliContext): Promise<number> {
  const { store, out } = ctx;
  const remote = await readRemote(store);
  const local = await localReport(ctx.dbPath(), store.location);
  const latest = remote ? latestSnapshot(remote.manifest) : undefined;
  const now = Date.now();

  out.result({
    store: store.location,
    storeSource: ctx.storeSource,
    manifest: remote ? { seq: remote.manifest.seq, generation: remote.manifest.generation, etag: remote.etag } : null,
    latest: latest ? { ...latest, ageMs: now - Date.parse(latest.createdAt) } : null,
    retained: remote?.manifest.snapshots.length ?? 0,
    leased: remote?.leased ?? false,
    local,
  });

  out.line(`store      ${store.location}  (from ${ctx.storeSource})`);
  if (!remote) {
    out.line(`manifest   none: no backup here (no ${MANIFEST_KEY})`);
  } else {
    const m = remote.manifest;
    out.line(`manifest   seq ${m.seq}, generation ${m.generation || '(none yet)'}`);
    if (latest) {
      out.line(
        `latest     seq ${latest.seq} at ${latest.createdAt} (${formatAge(now - Date.parse(latest.createdAt))} ago), ` +
          `${formatBytes(latest.bytes)} (${formatBytes(latest.compressedBytes)} ${latest.codec})`,
      );
      const oldest = m.snapshots.at(-1)!;
      out.line(`retained   ${m.snapshots.length} snapshot${m.snapshots.length === 1 ? '' : 's'} (oldest seq ${oldest.seq} at ${oldest.createdAt})`);
    } else {
      out.line('latest     none: no snapshot published yet');
    }
    out.line(`lease      ${remote.leased ? 'held: a writer is running' : 'free: no writer is running'}`);
  }

  if (!local.exists) {
    out.line(`local      ${local.path}: does not exist`);
  } else {
    out.line(`local      ${local.path}: ${formatBytes(local.bytes!)}`);
    if (local.inUse) out.line(`in use     by ${describeHolder(local.inUse.holder)}: snapshot and restore into this file are refused (LOCKED) until it stops`);
    const s = local.state;
    if (!s) {
      out.line(`sidecar    none (${sidecarPath(local.path)}): not restored by this library; it would refuse to start on it while the store holds a backup`);
    } else {
      const { label, advice } = describeVerdict(local.verdict!);
      const dirty = local.verdict === 'in-use' ? (s.dirty ? ' (dirty)' : '') : '';
      const relation = !remote ? '' : s.seq === remote.manifest.seq && s.generation === remote.manifest.generation ? ', same as the store' : s.seq < remote.manifest.seq ? `, behind the store (seq ${remote.manifest.seq})` : `, ahead of the store (seq ${remote.manifest.seq})`;
      out.line(`sidecar    seq ${s.seq}, generation ${s.generation}, ${label}${dirty}${relation}`);
      if (advice) out.line(`           ${advice}`);
      if (!local.sameStore) out.line(`           from another store (${s.store}): the library treats the file as of unknown origin here`);
    }
  }
  return 0;
}
