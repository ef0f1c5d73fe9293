/**
 * Command-line parsing: one command, then flags (global or that command's own). Anything unexpected is
 * a `UsageError` (exit 2, one line and a pointer to the help); values are checked here so commands get
 * typed options. `--help` and `help [command]` ask for help, `--version` for the version.
 */
import { parseArgs } from 'node:util';

export const COMMANDS = ['status', 'list', 'restore', 'snapshot', 'verify', 'rebuild-manifest'] as const;
export type Command = (typeof COMMANDS)[number];

export class UsageError extends Error {
  /** The command the error is about, when known: the pointer then names its own help. */
  readonly command: Command | undefined;
  constructor(message: string, command?: Command) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

export function isCommand(name: string | undefined): name is Command {
  return COMMANDS.includes(name as Command);
}

export interface GlobalOptions {
  db?: string;
  backupDir?: string;
  prefix?: string;
  container?: string;
  json: boolean;
  quiet: boolean;
}

export type SnapshotSelector = { seq: number } | { at: Date } | { beforeMigration: string } | { latest: true } | { all: true };

export type ParsedArgs =
  /** `topic`: the command whose help was asked for (`help restore`, `restore --help`); none: the overview. */
  | { command: 'help'; topic?: Command }
  | { command: 'version' }
  | ({ command: 'status' | 'list' | 'snapshot' } & GlobalOptions)
  | ({ command: 'restore'; select: SnapshotSelector; to?: string; force: boolean; ifExists: boolean; migrations?: string } & GlobalOptions)
  | ({ command: 'verify'; select: SnapshotSelector; tempDir?: string } & GlobalOptions)
  | ({ command: 'rebuild-manifest'; dryRun: boolean; tempDir?: string } & GlobalOptions);

const OPTIONS = {
  db: { type: 'string' },
  'backup-dir': { type: 'string' },
  prefix: { type: 'string' },
  container: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  seq: { type: 'string' },
  at: { type: 'string' },
  'before-migration': { type: 'string' },
  migrations: { type: 'string' },
  to: { type: 'string' },
  force: { type: 'boolean' },
  'if-exists': { type: 'boolean' },
  all: { type: 'boolean' },
  'temp-dir': { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const;

type Flag = keyof typeof OPTIONS;
const GLOBAL: readonly Flag[] = ['db', 'backup-dir', 'prefix', 'container', 'json', 'quiet', 'help', 'version'];
const OWN: Record<Command, readonly Flag[]> = {
  status: [],
  list: [],
  snapshot: [],
  restore: ['seq', 'at', 'before-migration', 'migrations', 'to', 'force', 'if-exists'],
  verify: ['all', 'seq', 'temp-dir'],
  'rebuild-manifest': ['dry-run', 'temp-dir'],
};

function parseSeq(text: string, command: Command): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`--seq must be a snapshot sequence number (a whole number); got ${JSON.stringify(text)}.`, command);
  return Number(text);
}

function parseTime(text: string, command: Command): Date {
  const at = new Date(text);
  // Date also accepts bare numbers and vague strings; ask for something with a date in it.
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(at.getTime())) {
    throw new UsageError(`--at must be an ISO 8601 time such as 2026-01-31T12:00:00Z; got ${JSON.stringify(text)}.`, command);
  }
  return at;
}

function nonEmpty(flag: string, value: string | undefined, command?: Command): string | undefined {
  if (value !== undefined && value.trim() === '') throw new UsageError(`--${flag} needs a value.`, command);
  return value;
}

export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  // The command, if one is recognisable, so that an error in its flags points at its own help.
  const named = argv.find((a) => !a.startsWith('-'));
  const about = isCommand(named) ? named : undefined;
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(e.message)?.[1] ?? '';
      throw new UsageError(`unknown option ${flag}`.trim() + '.', about);
    }
    // parseArgs' own messages run over several lines (with a hint about "--"): keep the first.
    throw new UsageError(e.message.split('\n')[0]!, about);
  }
  const { values, positionals } = parsed;
  const [name, ...extra] = positionals;
  if (name === 'help') {
    if (extra.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(extra[1])} after help ${extra[0]}.`);
    const topic = extra[0];
    if (topic !== undefined && !isCommand(topic)) throw new UsageError(`no help for ${JSON.stringify(topic)}: commands are ${COMMANDS.join(', ')}.`);
    return topic === undefined ? { command: 'help' } : { command: 'help', topic };
  }
  if (values.help) return about === undefined ? { command: 'help' } : { command: 'help', topic: about };
  if (values.version) return { command: 'version' };
  if (name === undefined) throw new UsageError(`missing command: one of ${COMMANDS.join(', ')}.`);
  if (!isCommand(name)) throw new UsageError(`unknown command ${JSON.stringify(name)}: expected one of ${COMMANDS.join(', ')}.`);
  const command = name;
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])} after ${command}.`, command);
  for (const flag of Object.keys(values) as Flag[]) {
    if (!GLOBAL.includes(flag) && !OWN[command].includes(flag)) throw new UsageError(`--${flag} does not apply to ${command}.`, command);
  }

  const global: GlobalOptions = {
    db: nonEmpty('db', values.db, command),
    backupDir: nonEmpty('backup-dir', values['backup-dir'], command),
    prefix: values.prefix, // '' is meaningful: the container root
    container: nonEmpty('container', values.container, command),
    json: values.json ?? false,
    quiet: values.quiet ?? false,
  };
  if (global.container !== undefined && global.backupDir !== undefined) throw new UsageError('--container names an Azure container; it does not apply with --backup-dir.', command);

  if (command === 'restore') {
    const given = [values.seq !== undefined && '--seq', values.at !== undefined && '--at', values['before-migration'] !== undefined && '--before-migration'].filter(Boolean);
    if (given.length > 1) throw new UsageError(`restore takes one of --seq, --at and --before-migration; got ${given.join(' and ')}.`, command);
    const beforeMigration = nonEmpty('before-migration', values['before-migration'], command);
    const select: SnapshotSelector =
      values.seq !== undefined ? { seq: parseSeq(values.seq, command) } : values.at !== undefined ? { at: parseTime(values.at, command) } : beforeMigration !== undefined ? { beforeMigration } : { latest: true };
    const migrations = nonEmpty('migrations', values.migrations, command);
    return { command, ...global, select, to: nonEmpty('to', values.to, command), force: values.force ?? false, ifExists: values['if-exists'] ?? false, ...(migrations !== undefined ? { migrations } : {}) };
  }
  if (command === 'verify') {
    if (values.seq !== undefined && values.all) throw new UsageError('verify takes --all or --seq, not both.', command);
    const select: SnapshotSelector = values.all ? { all: true } : values.seq !== undefined ? { seq: parseSeq(values.seq, command) } : { latest: true };
    return { command, ...global, select, tempDir: nonEmpty('temp-dir', values['temp-dir'], command) };
  }
  if (command === 'rebuild-manifest') return { command, ...global, dryRun: values['dry-run'] ?? false, tempDir: nonEmpty('temp-dir', values['temp-dir'], command) };
  return { command, ...global };
}
