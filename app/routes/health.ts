/**
 * GET /health: 200 when ok or degraded, 503 when unhealthy (a probe should then restart or alert).
 * Read-only: it never writes, so polling it costs no commit and no snapshot.
 */
import type { FastifyInstance } from 'fastify';
import { count } from 'drizzle-orm';
import { documents } from '../../schema/documents.ts';
import type { AppDatabase } from '../database.ts';
import { assessSync, type PendingClock } from '../sync-health.ts';

export interface HealthRoutesOptions {
  db: AppDatabase;
  clock: PendingClock;
  now: () => number;
  /** The snapshot ceiling the library was configured with. */
  maxIntervalMs: number;
}

export function healthRoutes(app: FastifyInstance, { db, clock, now, maxIntervalMs }: HealthRoutesOptions): void {
  app.get('/health', async (request, reply) => {
    let database: { ok: boolean; documents: number | null; error?: string };
    try {
      const [row] = await db.select({ n: count() }).from(documents);
      database = { ok: true, documents: row?.n ?? 0 };
    } catch (error) {
      request.log.error({ err: error }, 'health: database query failed');
      database = { ok: false, documents: null, error: (error as Error).message };
    }
    const s = db.$sync.status();
    const at = now();
    const sync = assessSync(s, clock.pendingSince(s), at, maxIntervalMs);
    const status = database.ok ? sync.status : 'unhealthy';
    const reasons = database.ok ? sync.reasons : ['database query failed', ...sync.reasons];
    const lastSnapshotAt = s.lastSnapshot?.at ?? null;
    return reply.code(status === 'unhealthy' ? 503 : 200).send({
      status,
      reasons,
      database,
      sync: {
        pendingCommits: s.pendingCommits,
        pendingForMs: sync.pendingForMs,
        lastSnapshotAt,
        lastSnapshotAgeMs: lastSnapshotAt === null ? null : Math.max(0, at - Date.parse(lastSnapshotAt)),
        // Migrations applied at the last restore point uploaded (count, last hash and created_at).
        schema: s.lastSnapshot?.schema ?? null,
        lastError: s.lastError,
        snapshotsOk: s.snapshotsOk,
        snapshotsFailed: s.snapshotsFailed,
        state: s.state,
        restoredFrom: s.restoredFrom,
        maxIntervalMs,
      },
    });
  });
}
