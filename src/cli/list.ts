/** `list`: one line per retained snapshot, newest first. */
import type { CliContext } from './context.ts';
import { formatBytes, table } from './format.ts';
import { readBackups } from './remote.ts';

export async function list(ctx: CliContext): Promise<number> {
  const { manifest } = await readBackups(ctx);
  const { out } = ctx;
  out.result({ store: ctx.store.location, generation: manifest.generation, seq: manifest.seq, snapshots: manifest.snapshots });
  const rows = manifest.snapshots.map((s) => [
    String(s.seq),
    s.createdAt,
    formatBytes(s.bytes),
    formatBytes(s.compressedBytes),
    s.sha256.slice(0, 12),
    s.key + (s.rolledBackTo ? `  (rolled back to seq ${s.rolledBackTo.seq})` : ''),
  ]);
  for (const line of table(['seq', 'created', 'bytes', 'compressed', 'sha256', 'key'], rows, [0, 2, 3])) out.line(line);
  return 0;
}
