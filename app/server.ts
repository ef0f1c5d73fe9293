/**
 * The reference API. `buildApp(db)` is the Fastify app (tests drive it with `app.inject`); run as a
 * script it opens the database (restore, migrate, seed), listens, prints `LISTENING <url>` and on
 * SIGTERM/SIGINT stops HTTP, takes the final snapshot and exits 0.
 */
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { DEFAULT_MAX_INTERVAL_MS, loadConfig } from './config.ts';
import { openDatabase, type AppDatabase } from './database.ts';
import { installErrorHandling, problemsFromSchemaErrors, summarize } from './errors.ts';
import { documentRoutes } from './routes/documents.ts';
import { healthRoutes } from './routes/health.ts';
import { PendingClock } from './sync-health.ts';

export interface BuildOptions {
  /** The snapshot ceiling given to the library (for /health). Default: the library's, 5 min. */
  maxIntervalMs?: number;
  /** Injectable clock, so the health rules can be tested without waiting. */
  now?: () => number;
  /** Process start: the age of commits left pending by start-up (migrations, seeds, a dirty file). */
  startedAt?: number;
  logger?: FastifyServerOptions['logger'];
  /** POST/PUT/DELETE answer once the write is in the store (DURABLE_WRITES). Default false. */
  durableWrites?: boolean;
  /** How long such a write waits for the store before a 503 (DURABLE_TIMEOUT_MS); the library's default when omitted. */
  durableTimeoutMs?: number | undefined;
}

export function buildApp(db: AppDatabase, options: BuildOptions = {}): FastifyInstance {
  const now = options.now ?? Date.now;
  const app = Fastify({
    logger: options.logger ?? false,
    ajv: {
      customOptions: {
        // Never coerce or strip: `"name": 42` and unknown fields are 400s, exactly as the seed runner
        // refuses them. allErrors reports every bad field at once; the schemas have no costly keywords.
        coerceTypes: false,
        removeAdditional: false,
        allErrors: true,
      },
    },
    schemaErrorFormatter: (errors, dataVar) => new Error(summarize(problemsFromSchemaErrors(errors, dataVar))),
  });
  const clock = new PendingClock(db.$sync, now, options.startedAt);
  app.addHook('onClose', async () => clock.dispose());
  installErrorHandling(app);
  documentRoutes(app, { db, onWrite: () => clock.noteWrite(), durableWrites: options.durableWrites ?? false, durableTimeoutMs: options.durableTimeoutMs });
  healthRoutes(app, { db, clock, now, maxIntervalMs: options.maxIntervalMs ?? DEFAULT_MAX_INTERVAL_MS });
  return app;
}

/** SIGTERM/SIGINT: stop taking requests, let in-flight ones finish, final snapshot, exit. */
function handleSignals(app: FastifyInstance, db: AppDatabase, drainTimeoutMs: number): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // Orchestrators and npm may deliver a signal twice; the final snapshot is already on its way.
      console.error(`${signal} again: already shutting down (final snapshot in progress)`);
      return;
    }
    stopping = true;
    console.info(`${signal} received: closing HTTP, then taking the final snapshot`);
    void (async () => {
      const drained = await Promise.race([
        app.close().then(() => true, (error: unknown) => (console.error('HTTP close failed:', error), true)),
        new Promise<false>((r) => setTimeout(r, drainTimeoutMs, false).unref()),
      ]);
      if (!drained) console.error(`requests still running after ${drainTimeoutMs} ms; taking the final snapshot anyway`);
      try {
        await db.$sync.close();
        console.info('final snapshot done; exiting');
        process.exit(0);
      } catch (error) {
        console.error('FINAL SNAPSHOT FAILED, commits remain only in the local file:', error);
        process.exit(1);
      }
    })();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  const config = loadConfig();
  const { db } = await openDatabase({ databaseUrl: config.databaseUrl, snapshot: config.snapshot, shutdownTimeoutMs: config.shutdownTimeoutMs, role: config.role });
  const app = buildApp(db, { maxIntervalMs: config.snapshot.maxIntervalMs, startedAt, logger: { level: config.logLevel }, durableWrites: config.durableWrites, durableTimeoutMs: config.durableTimeoutMs });
  handleSignals(app, db, config.drainTimeoutMs);
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    // e.g. the port is taken: still upload what migrations and seeds committed before exiting.
    await db.$sync.close().catch(() => undefined);
    throw error;
  }
  // PORT=0 picks a free port: print the real one (tests and scripts parse this line).
  const { address, port } = app.server.address() as AddressInfo;
  console.log(`LISTENING http://${address.includes(':') ? `[${address}]` : address}:${port}`);
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  main().catch((error: unknown) => {
    console.error('startup failed:', error);
    process.exit(1);
  });
}
