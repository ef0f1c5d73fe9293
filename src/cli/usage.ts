/** The help text: printed by --help (stdout, exit 0) and after a usage error (stderr, exit 2). */
export const USAGE = `Usage: drizzle-libsql-blob <command> [options]

Inspect and operate the snapshots that drizzle-libsql-blob keeps in Azure Blob Storage (or a directory).

Commands:
  status                 store, manifest, latest snapshot, writer lease and the local file's state
  list                   retained snapshots, newest first
  restore                download a snapshot (default: the latest) into the database file; never writes the store
    --seq N              the snapshot with sequence number N
    --at TIME            the newest snapshot taken at or before TIME (ISO 8601, e.g. 2026-01-31T12:00:00Z)
    --to FILE            write FILE instead of the database file
    --force              replace the target file if it exists
  snapshot               snapshot the database file now and publish it (takes the writer lease)

restore and snapshot lock the database file: beside a running app on it they fail with LOCKED (the app's own
db.$sync.flush() or its shutdown takes the snapshot); status, list and verify run beside it.
  verify                 restore drill: download and check snapshots in a temporary directory
    --all                every retained snapshot (default: the latest)
    --seq N              only snapshot N
    --temp-dir DIR       where to download them (default: the OS temp directory)
  rebuild-manifest       recreate a deleted manifest.json from the snapshots in the store, each verified
                         first (the newest that verifies becomes the latest); never replaces a manifest,
                         never deletes anything
    --dry-run            report what would be listed; write nothing
    --temp-dir DIR       where to download snapshots to verify them (default: the OS temp directory)

Options:
  --db FILE              the local database (default: DATABASE_URL, else ./data/app.db)
  --backup-dir DIR       use this local backup directory instead of the store named by the environment
  --prefix P             prefix inside the store (overrides AZURE_STORAGE_PREFIX)
  --json                 machine-readable output on stdout
  --quiet                no progress or log lines on stderr
  -h, --help             show this help

Store, as the library picks it: AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_CONTAINER_URL (SAS), or
AZURE_STORAGE_ACCOUNT_URL / AZURE_STORAGE_ACCOUNT_NAME (DefaultAzureCredential), with AZURE_STORAGE_CONTAINER
and AZURE_STORAGE_PREFIX; with none of them, BACKUP_DIR (default ./.data/backups).

Exit status: 0 success, 1 failure (printed as "error [CODE]: message"), 2 usage error.
`;
