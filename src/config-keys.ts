import { SyncError } from './errors.ts';

/**
 * Strict options: a misspelled option (`restor`, `snapshots`, `debounceMS`) must not be silently
 * ignored, because the default it falls back to is rarely what was meant. Pure functions; every options
 * level (drizzle(), its nested objects, the store factories) checks its keys through `assertKnownKeys`.
 */

/** Every key of T, checked by the compiler: a key added to T and not here (or a stray one) does not compile. */
export function keysOf<T>(keys: { [K in keyof Required<T>]: true }): readonly (keyof T & string)[] {
  return Object.keys(keys) as (keyof T & string)[];
}

/** Levenshtein distance (insert, delete, substitute: 1 each; a swap of neighbours counts 1, as a typo). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The valid name closest to `name`, if it is close enough to be a typo: case is ignored (debounceMS ->
 * debounceMs), and at most a third of the longer name may differ (so 'foo' suggests nothing rather than
 * a random option). Ties go to the earlier name in `valid`.
 */
export function closestName(name: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of valid) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  const allowed = Math.max(1, Math.floor(Math.max(name.length, best.length) / 3));
  return bestDistance <= allowed ? best : undefined;
}

/** The message for one unknown key: names it with its path and says what to write instead. */
export function unknownOptionMessage(path: string, key: string, valid: readonly string[]): string {
  const at = (name: string) => (path ? `${path}.${name}` : name);
  const suggestion = closestName(key, valid);
  if (suggestion !== undefined) return `unknown option '${at(key)}' — did you mean '${at(suggestion)}'?`;
  return `unknown option '${at(key)}' — remove it; valid options${path ? ` of ${path}` : ''} are: ${valid.join(', ')}.`;
}

/**
 * Throws CONFIG for the first own key of `options` that is not in `valid`. `path` is where the object sits
 * ('' for the top level, 'snapshot', 'snapshot.retain'); `where` prefixes the message (e.g. 'directoryStore: ').
 * Keys whose value is `undefined` are checked too: `{ restor: undefined }` is still a typo.
 */
export function assertKnownKeys(options: object, valid: readonly string[], path = '', where = ''): void {
  for (const key of Object.keys(options)) {
    if (!valid.includes(key)) throw new SyncError('CONFIG', `${where}${unknownOptionMessage(path, key, valid)}`);
  }
}

/**
 * An options level that must be a plain object when given: `snapshot: 5` is CONFIG naming the level and
 * what it expects, then its keys are checked. Returns the object (or undefined when not given).
 */
export function optionsObject<T extends object>(value: T | undefined, path: string, valid: readonly string[], example: string, where = ''): T | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SyncError('CONFIG', `${where}${path} must be an object such as ${example}; got ${describe(value)}.`);
  }
  assertKnownKeys(value, valid, path, where);
  return value;
}

/** A value as the user wrote it, for error messages: JSON where possible, the type otherwise. */
export function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'bigint') return `${value}n`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return typeof value;
  }
}
