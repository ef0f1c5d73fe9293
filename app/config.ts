/**
 * The reference API's settings, all from the environment so `npm start` runs with none set. The
 * snapshot store itself is chosen by the library's `storeFromEnv()` (Azure variables or BACKUP_DIR).
 */
import type { Role, SnapshotOptions } from 'drizzle-libsql-blob';

export interface AppConfig {
  port: number;
  host: string;
  /** Local libSQL file, e.g. `file:./data/app.db`. */
  databaseUrl: string;
  /** Passed to the library; `maxIntervalMs` is always set because /health judges staleness by it. */
  snapshot: SnapshotOptions & { maxIntervalMs: number };
  /** Bound on the final snapshot at shutdown (Container Apps grants 30 s by default). */
  shutdownTimeoutMs: number;
  /** How long SIGTERM waits for in-flight requests before the final snapshot anyway. */
  drainTimeoutMs: number;
  /** Fastify (pino) log level, or `silent`. */
  logLevel: string;
  /** DB_ROLE: auto (default), writer or replica; see the library's `role`. */
  role: Role;
  /**
   * DURABLE_WRITES=true: POST, PUT and DELETE answer only once their commit is in the store
   * (`db.$sync.durable()`), so an acknowledged write survives losing the container's disk. Costs each
   * write the upload's latency (writes arriving together share uploads). Default false: answered at commit,
   * uploaded by the schedule (debounce, 5-minute ceiling, final snapshot on SIGTERM).
   */
  durableWrites: boolean;
  /** DURABLE_TIMEOUT_MS: how long a durable write waits for the store before answering 503 (the library's default, 30 s, when unset). */
  durableTimeoutMs: number | undefined;
}

/** The library's default ceiling, made explicit here so /health and the scheduler agree on it. */
export const DEFAULT_MAX_INTERVAL_MS = 300_000;

type Env = Record<string, string | undefined>;

/** Empty counts as unset, so `VAR=` in a .env file or a test harness means "use the default". */
function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max?: number): number;
function integer(env: Env, name: string, fallback: undefined, min: number, max?: number): number | undefined;
function integer(env: Env, name: string, fallback: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new Error(`${name} must be a whole number between ${min} and ${max}; got ${JSON.stringify(raw)}.`);
  }
  return value;
}

export function loadConfig(env: Env = process.env): AppConfig {
  const snapshot: AppConfig['snapshot'] = { maxIntervalMs: integer(env, 'SNAPSHOT_MAX_INTERVAL_MS', DEFAULT_MAX_INTERVAL_MS, 1) };
  // Only what is set is passed on: the library keeps its own defaults for the rest.
  const debounceMs = integer(env, 'SNAPSHOT_DEBOUNCE_MS', undefined, 0);
  const maxCommits = integer(env, 'SNAPSHOT_MAX_COMMITS', undefined, 1);
  const retain = integer(env, 'SNAPSHOT_RETAIN', undefined, 1);
  if (debounceMs !== undefined) snapshot.debounceMs = debounceMs;
  if (maxCommits !== undefined) snapshot.maxCommits = maxCommits;
  if (retain !== undefined) snapshot.retain = retain;
  return {
    port: integer(env, 'PORT', 3000, 0, 65_535),
    // Loopback unless told otherwise: containers set HOST=0.0.0.0 explicitly.
    host: read(env, 'HOST') ?? '127.0.0.1',
    databaseUrl: read(env, 'DATABASE_URL') ?? 'file:./data/app.db',
    snapshot,
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 25_000, 1),
    drainTimeoutMs: integer(env, 'SHUTDOWN_DRAIN_MS', 10_000, 0),
    logLevel: read(env, 'LOG_LEVEL') ?? 'info',
    role: role(read(env, 'DB_ROLE') ?? 'auto'),
    durableWrites: boolean(env, 'DURABLE_WRITES', false),
    durableTimeoutMs: integer(env, 'DURABLE_TIMEOUT_MS', undefined, 1),
  };
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new Error(`${name} must be true or false (or 1 or 0); got ${JSON.stringify(raw)}.`);
}

function role(value: string): Role {
  if (value !== 'auto' && value !== 'writer' && value !== 'replica') throw new Error(`DB_ROLE must be auto, writer or replica; got ${JSON.stringify(value)}.`);
  return value;
}
