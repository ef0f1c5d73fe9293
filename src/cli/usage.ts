/**
 * The help texts: the overview (`--help`, `help`) and one page per command (`help restore`,
 * `restore --help`), on stdout with exit 0. A usage error prints one line and points here instead.
 */
import type { Command } from './args.ts';

const NAME = 'drizzle-libsql-blob';

const OPTIONS = `Options (every command):
  --db FILE              the local database (default: DATABASE_URL, else ./data/app.db)
  --backup-dir DIR       use this local backup directory instead of the store named by the environment
  --container NAME       Azure container (overrides AZURE_STORAGE_CONTAINER)
  --prefix P             prefix inside the store (overrides AZURE_STORAGE_PREFIX; '' is the container root)
  --json                 machine-readable output on stdout
  --quiet                no progress or log lines on stderr
  -h, --help             show help (after a command: that command's help)
  --version              print the version
`;

const STORE = `Store, as the library picks it: AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_CONTAINER_URL (SAS), or
AZURE_STORAGE_ACCOUNT_URL / AZURE_STORAGE_ACCOUNT_NAME (DefaultAzureCredential), with AZURE_STORAGE_CONTAINER
and AZURE_STORAGE_PREFIX (AZURE_STORAGE_CREATE_CONTAINER=true: a missing container is created by the first
snapshot); with none of them, BACKUP_DIR (default ./.data/backups).
`;

const EXIT = `Exit status: 0 success, 1 failure (printed as "error [CODE]: message"), 2 usage error.
`;

/** One entry per command: the summary line of the overview, and the body of its own page. */
const COMMANDS: Record<Command, { summary: string; flags?: string; details?: string }> = {
  status: { summary: 'store, manifest, latest snapshot, writer lease and the local file\'s state' },
  list: { summary: 'retained snapshots, newest first ("no snapshots" on an empty store, exit 0)' },
  restore: {
    summary: 'download a snapshot (default: the latest) into the database file; never writes the store',
    flags: `    --seq N              the snapshot with sequence number N
    --at TIME            the newest snapshot taken at or before TIME (ISO 8601, e.g. 2026-01-31T12:00:00Z)
    --before-migration M the newest restore point whose schema precedes migration M (its journal tag,
                         e.g. 0003_add_tags, or its hash as list shows it)
    --migrations DIR     drizzle-kit's migrations folder, to name M by its tag (default ./drizzle if present)
    --to FILE            write FILE instead of the database file
    --force              replace the target file if it exists
    --if-exists          succeed (exit 0) when there is nothing to restore: the store holds no snapshot
                         yet, or the target file already exists (it is kept; --force replaces it)
`,
    details: `The parent directory of the target is created. restore takes no writer lease, so it can run while
another instance is the writer; it locks the target file (LOCKED beside an app running on it).
A deploy's start script: ${NAME} restore --if-exists && drizzle-kit migrate && node seed.js &&
${NAME} snapshot && node server.js (see the README, "Deploying with drizzle-kit migrations").
`,
  },
  snapshot: {
    summary: 'snapshot the database file now and publish it (takes the writer lease)',
    details: `Uploads only when the file differs from the store's latest snapshot; prints upload progress on stderr.
Beside a running app on the file it fails with LOCKED (the app's own db.$sync.flush() or its shutdown
takes the snapshot); beside a writer on another machine, with LEASE_HELD.
`,
  },
  verify: {
    summary: 'restore drill: download and check snapshots in a temporary directory',
    flags: `    --all                every retained snapshot (default: the latest)
    --seq N              only snapshot N
    --temp-dir DIR       where to download them (default: the OS temp directory)
`,
  },
  'rebuild-manifest': {
    summary: `recreate a deleted manifest.json from the snapshots in the store, each verified
                         first (the newest that verifies becomes the latest); never replaces a manifest,
                         never deletes anything`,
    flags: `    --dry-run            report what would be listed; write nothing
    --temp-dir DIR       where to download snapshots to verify them (default: the OS temp directory)
`,
  },
};

function commandLine(command: Command): string {
  const { summary, flags } = COMMANDS[command];
  return `  ${command.padEnd(23)}${summary}\n${flags ?? ''}`;
}

/** The overview: every command and its flags. */
export const USAGE = `Usage: ${NAME} <command> [options]
       ${NAME} help [command]

Inspect and operate the snapshots that drizzle-libsql-blob keeps in Azure Blob Storage (or a directory).

Commands:
${(Object.keys(COMMANDS) as Command[]).map(commandLine).join('')}
restore and snapshot lock the database file: beside a running app on it they fail with LOCKED (the app's own
db.$sync.flush() or its shutdown takes the snapshot); status, list and verify run beside it.

${OPTIONS}
${STORE}
${EXIT}`;

/** One command's page. */
export function commandHelp(command: Command): string {
  const { details } = COMMANDS[command];
  return `Usage: ${NAME} ${command} [options]

${commandLine(command)}${details ? `\n${details}` : ''}
${OPTIONS}
${STORE}
${EXIT}`;
}

/** Ends a usage error's one line: where the help is (that command's own, when the error is about one). */
export function helpPointer(command: Command | undefined): string {
  return `See "${NAME}${command === undefined ? '' : ` ${command}`} --help".`;
}
