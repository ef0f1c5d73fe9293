/**
 * Decides from the SQL text alone whether a statement can change the database file.
 * We cannot use `rowsAffected` (DDL reports 0) and drizzle's logger fires before execution, so the
 * counting client asks this module. Errs towards "write": a spurious snapshot costs little, a
 * missed commit could cost data.
 */
const WRITE_VERBS = new Set(['INSERT', 'UPDATE', 'DELETE', 'REPLACE', 'CREATE', 'DROP', 'ALTER', 'REINDEX', 'ANALYZE', 'UPSERT']);
const READ_VERBS = new Set(['SELECT', 'VALUES', 'EXPLAIN', 'BEGIN', 'COMMIT', 'END', 'ROLLBACK', 'SAVEPOINT', 'RELEASE', 'ATTACH', 'DETACH']);
/** Pragmas whose assignment is persisted in the database file (others are per-connection settings). */
const PERSISTENT_PRAGMAS = new Set(['user_version', 'application_id', 'journal_mode', 'page_size', 'auto_vacuum', 'incremental_vacuum']);

/**
 * If a comment or a quoted literal/identifier starts at `i`, returns the index just past it; else -1.
 * The one lexer rule both scanners below share.
 */
function skipCommentOrQuoted(sql: string, i: number): number {
  const c = sql[i];
  const n = sql.length;
  if (c === '-' && sql[i + 1] === '-') {
    const end = sql.indexOf('\n', i);
    return end === -1 ? n : end + 1;
  }
  if (c === '/' && sql[i + 1] === '*') {
    const end = sql.indexOf('*/', i + 2);
    return end === -1 ? n : end + 2;
  }
  if (c === "'" || c === '"' || c === '`' || c === '[') {
    const close = c === '[' ? ']' : c;
    let j = i + 1;
    while (j < n) {
      if (sql[j] !== close) j++;
      else if (close !== ']' && sql[j + 1] === close) j += 2; // a doubled quote escapes itself
      else break;
    }
    return Math.min(j + 1, n);
  }
  return -1;
}

/** Yields the upper-cased keywords/identifiers of `sql` at parenthesis depth 0, skipping comments and literals. */
function* topLevelWords(sql: string): Generator<string> {
  let depth = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const skipped = skipCommentOrQuoted(sql, i);
    if (skipped !== -1) {
      i = skipped;
      continue;
    }
    const c = sql[i]!;
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$]/.test(sql[j]!)) j++;
      if (depth === 0) yield sql.slice(i, j).toUpperCase();
      i = j;
      continue;
    }
    i++;
  }
}

export function isWriteStatement(sql: string): boolean {
  const words = topLevelWords(sql);
  const first = words.next();
  if (first.done) return false;
  const verb = first.value;
  if (WRITE_VERBS.has(verb)) return true;
  if (verb === 'VACUUM') return false; // rewrites the file but changes no content (VACUUM INTO writes elsewhere)
  if (verb === 'PRAGMA') return isPersistentPragmaAssignment(sql);
  if (verb === 'WITH') {
    // A CTE prefix: the statement writes if its main verb (at depth 0) is DML.
    for (const word of words) if (WRITE_VERBS.has(word)) return true;
    return false;
  }
  if (READ_VERBS.has(verb)) return false;
  return true; // unknown statement: assume it writes
}

function isPersistentPragmaAssignment(sql: string): boolean {
  const match = /^\s*PRAGMA\s+(?:[\w"]+\.)?"?(\w+)"?\s*(=|\()/i.exec(stripLeadingComments(sql));
  return match !== null && PERSISTENT_PRAGMAS.has(match[1]!.toLowerCase());
}

function stripLeadingComments(sql: string): string {
  return sql.replace(/^(\s*(--[^\n]*\n|\/\*[\s\S]*?\*\/))*/, '');
}

/** True for any statement in a multi-statement script that writes (used for `executeMultiple`). */
export function scriptWrites(script: string): boolean {
  return splitStatements(script).some(isWriteStatement);
}

/** Splits a script on top-level semicolons (outside literals and comments). */
export function splitStatements(script: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  while (i < script.length) {
    const skipped = skipCommentOrQuoted(script, i);
    if (skipped !== -1) i = skipped;
    else if (script[i] === ';') {
      out.push(script.slice(start, i));
      start = ++i;
    } else i++;
  }
  out.push(script.slice(start));
  return out.filter((s) => s.trim() !== '' && stripLeadingComments(s).trim() !== '');
}

/**
 * `isWriteStatement` remembered per SQL text. drizzle builds the same text for every run of a query
 * shape (values travel as parameters), so nearly every statement is a hit: one Map lookup instead of a
 * scan. Bounded: when full, the oldest entry goes (insertion order), so an app generating unbounded
 * distinct texts costs a scan per miss and at most `capacity` entries. Texts longer than
 * `maxSqlLength` are not kept (a statement that long costs far more to run than to classify).
 */
export class WriteVerdictCache {
  readonly #verdicts = new Map<string, boolean>();
  readonly capacity: number;
  readonly maxSqlLength: number;

  constructor(capacity = 1000, maxSqlLength = 4096) {
    this.capacity = capacity;
    this.maxSqlLength = maxSqlLength;
  }

  get size(): number {
    return this.#verdicts.size;
  }

  isWrite(sql: string): boolean {
    const leading = leadingVerbVerdict(sql);
    if (leading !== undefined) return leading;
    const known = this.#verdicts.get(sql);
    if (known !== undefined) return known;
    const verdict = isWriteStatement(sql);
    if (sql.length <= this.maxSqlLength) {
      if (this.#verdicts.size >= this.capacity) this.#verdicts.delete(this.#verdicts.keys().next().value!);
      this.#verdicts.set(sql, verdict);
    }
    return verdict;
  }
}

/** Lower-case ASCII letters of the verbs whose verdict the first word alone decides (isWriteStatement). */
const LEADING_VERBS: ReadonlyArray<readonly [string, boolean]> = [
  ['select', false],
  ['insert', true],
  ['update', true],
  ['delete', true],
];

/**
 * The verdict of a statement that starts with SELECT, INSERT, UPDATE or DELETE (any case) as its very
 * first characters and then a non-word character, as drizzle writes every query; undefined for anything
 * else (leading space or comments, WITH, PRAGMA, ...), which the cache and the parser handle. Read from
 * the first seven characters: the statement's text is built afresh for each call, and a Map lookup
 * hashes and compares all of it (a few µs per write for drizzle's insert of a wide row).
 */
export function leadingVerbVerdict(sql: string): boolean | undefined {
  if (sql.length < 7) return undefined;
  const next = sql.charCodeAt(6);
  const isWordChar = (next >= 48 && next <= 57) || (next >= 65 && next <= 90) || (next >= 97 && next <= 122) || next === 95 || next === 36;
  if (isWordChar) return undefined;
  outer: for (const [verb, writes] of LEADING_VERBS) {
    for (let i = 0; i < 6; i++) if ((sql.charCodeAt(i) | 0x20) !== verb.charCodeAt(i)) continue outer;
    return writes;
  }
  return undefined;
}
