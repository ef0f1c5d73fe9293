/** `list`: one line per retained snapshot, newest first; an empty store is no error ("no snapshots"). */
import type { CliContext } from './context.ts';
import { formatBytes, table } from './format.ts';
import { readRemote } from './remote.ts';
import { describeSchemaPosition } from '../sync/schema-position.ts';

export async function list(ctx: CliContext): Promise<number> {
  const remote = await readRemote(ctx.store);
  const { out } = ctx;
  if (remote === null || remote.manifest.snapshots.length === 0) {
    out.result({ store: ctx.store.location, generation: remote?.manifest.generation ?? null, seq: remote?.manifest.seq ?? null, snapshots: [] });
    out.line(`no snapshots in ${ctx.store.location} (chosen by ${ctx.storeSource})${remote === null ? ': it holds no manifest yet' : ''}`);
    return 0;
  }
  const { manifest } = remote;
  out.result({ store: ctx.store.location, generation: manifest.generation, seq: manifest.seq, snapshots: manifest.snapshots });
  const seqOf = new Map(manifest.snapshots.map((s) => [s.key, s.seq]));
  const rows = manifest.snapshots.map((s) => [
    String(s.seq),
    // A page delta restores through its chain: name the restore point it extends.
    s.kind === 'delta' ? `delta on ${seqOf.get(s.parent!) ?? '?'} (${s.pages ?? '?'} pages)` : (s.kind ?? 'full'),
    s.createdAt,
    // Migrations applied at this restore point, and the last one's hash (drizzle's __drizzle_migrations).
    describeSchemaPosition(s.schema),
    formatBytes(s.bytes),
    formatBytes(s.compressedBytes),
    s.sha256.slice(0, 12),
    s.key + (s.rolledBackTo ? `  (rolled back to seq ${s.rolledBackTo.seq})` : ''),
  ]);
  for (const line of table(['seq', 'kind', 'created', 'migrations', 'bytes', 'compressed', 'sha256', 'key'], rows, [0, 4, 5])) out.line(line);
  return 0;
}
