/**
 * Command-line parsing: one command, then flags (global or that command's own). Anything unexpected is
 * a `UsageError` (exit 2, with the usage text); values are checked here so commands get typed options.
 */
import { parseArgs } from 'node:util';

export const COMMANDS = ['status', 'list', 'restore', 'snapshot', 'verify', 'rebuild-manifest'] as const;
export type Command = (typeof COMMANDS)[number];

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface GlobalOptions {
  db?: string;
  backupDir?: string;
  prefix?: string;
  json: boolean;
  quiet: boolean;
}

export type SnapshotSelector = { seq: number } | { at: Date } | { latest: true } | { all: true };

export type ParsedArgs =
  | { command: 'help' }
  | ({ command: 'status' | 'list' | 'snapshot' } & GlobalOptions)
  | ({ command: 'restore'; select: SnapshotSelector; to?: string; force: boolean } & GlobalOptions)
  | ({ command: 'verify'; select: SnapshotSelector; tempDir?: string } & GlobalOptions)
  | ({ command: 'rebuild-manifest'; dryRun: boolean; tempDir?: string } & GlobalOptions);

const OPTIONS = {
  db: { type: 'string' },
  'backup-dir': { type: 'string' },
  prefix: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  seq: { type: 'string' },
  at: { type: 'string' },
  to: { type: 'string' },
  force: { type: 'boolean' },
  all: { type: 'boolean' },
  'temp-dir': { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const;

type Flag = keyof typeof OPTIONS;
const GLOBAL: readonly Flag[] = ['db', 'backup-dir', 'prefix', 'json', 'quiet', 'help'];
const OWN: Record<Command, readonly Flag[]> = {
  status: [],
  list: [],
  snapshot: [],
  restore: ['seq', 'at', 'to', 'force'],
  verify: ['all', 'seq', 'temp-dir'],
  'rebuild-manifest': ['dry-run', 'temp-dir'],
};

function parseSeq(text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`--seq must be a snapshot sequence number (a whole number); got ${JSON.stringify(text)}.`);
  return Number(text);
}

function parseTime(text: string): Date {
  const at = new Date(text);
  // Date also accepts bare numbers and vague strings; ask for something with a date in it.
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(at.getTime())) {
    throw new UsageError(`--at must be an ISO 8601 time such as 2026-01-31T12:00:00Z; got ${JSON.stringify(text)}.`);
  }
  return at;
}

function nonEmpty(flag: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === '') throw new UsageError(`--${flag} needs a value.`);
  return value;
}

export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(e.message)?.[1] ?? '';
      throw new UsageError(`unknown option ${flag}`.trim() + '.');
    }
    throw new UsageError(e.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: 'help' };
  if (positionals.length === 0) throw new UsageError(`missing command: one of ${COMMANDS.join(', ')}.`);
  const [name, ...extra] = positionals;
  if (!COMMANDS.includes(name as Command)) throw new UsageError(`unknown command ${JSON.stringify(name)}: expected one of ${COMMANDS.join(', ')}.`);
  const command = name as Command;
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])} after ${command}.`);
  for (const flag of Object.keys(values) as Flag[]) {
    if (!GLOBAL.includes(flag) && !OWN[command].includes(flag)) throw new UsageError(`--${flag} does not apply to ${command}.`);
  }

  const global: GlobalOptions = {
    db: nonEmpty('db', values.db),
    backupDir: nonEmpty('backup-dir', values['backup-dir']),
    prefix: values.prefix, // '' is meaningful: the container root
    json: values.json ?? false,
    quiet: values.quiet ?? false,
  };

  if (command === 'restore') {
    if (values.seq !== undefined && values.at !== undefined) throw new UsageError('restore takes --seq or --at, not both.');
    const select: SnapshotSelector = values.seq !== undefined ? { seq: parseSeq(values.seq) } : values.at !== undefined ? { at: parseTime(values.at) } : { latest: true };
    return { command, ...global, select, to: nonEmpty('to', values.to), force: values.force ?? false };
  }
  if (command === 'verify') {
    if (values.seq !== undefined && values.all) throw new UsageError('verify takes --all or --seq, not both.');
    const select: SnapshotSelector = values.all ? { all: true } : values.seq !== undefined ? { seq: parseSeq(values.seq) } : { latest: true };
    return { command, ...global, select, tempDir: nonEmpty('temp-dir', values['temp-dir']) };
  }
  if (command === 'rebuild-manifest') return { command, ...global, dryRun: values['dry-run'] ?? false, tempDir: nonEmpty('temp-dir', values['temp-dir']) };
  return { command, ...global };
}
