import { DOCUMENT_TYPES, type DocumentContent, type DocumentType } from './documents.ts';

/**
 * What a document looks like on the way in, shared by the seed runner and the HTTP API so both refuse
 * the same inputs with the same field names. `documentInputJsonSchema` is the same rule set for
 * Fastify's request validation.
 */
export const NAME_MAX = 200;
export const CONTENT_MAX_BYTES = 64 * 1024;
export const ID_PATTERN = '^[a-z0-9][a-z0-9:._-]{0,127}$';
/**
 * How deep objects and arrays may nest inside a document field (`content` itself is level 1). Real
 * documents nest a handful of levels; the limit keeps every later step (size check, JSON.stringify on
 * insert and in responses) far from the call-stack limit a 100k-level body would hit.
 */
export const JSON_DEPTH_MAX = 64;
/** A body with thousands of bad strings gets the first few named, not a response as large as the body. */
export const STRING_PROBLEMS_MAX = 10;

export interface DocumentInput {
  id?: string;
  type: DocumentType;
  name: string;
  content: DocumentContent;
}

export interface FieldProblem {
  field: string;
  message: string;
}

export const documentInputJsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'name', 'content'],
  properties: {
    id: { type: 'string', pattern: ID_PATTERN },
    type: { type: 'string', enum: [...DOCUMENT_TYPES] },
    name: { type: 'string', minLength: 1, maxLength: NAME_MAX },
    content: { type: 'object' },
  },
} as const;

/**
 * Why `text` would not come back from the database as sent, or undefined when it would. libSQL stores
 * the bytes after a NUL but reads text back as a C string, cut at the first NUL; the file stores UTF-8,
 * which cannot encode a lone UTF-16 surrogate, so one comes back as U+FFFD.
 */
export function unstorableTextReason(text: string): string | undefined {
  const nul = text.indexOf('\u0000');
  if (nul !== -1) return `contains a NUL character (U+0000) at index ${nul}, and the database would return the text cut there; remove it`;
  const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.exec(text);
  if (lone) {
    const unit = lone[0].charCodeAt(0).toString(16).toUpperCase();
    return `contains a lone UTF-16 surrogate (U+${unit}) at index ${lone.index}, which UTF-8 cannot store (it would come back as U+FFFD); send well-formed Unicode`;
  }
  return undefined;
}

/** `content.a[2]`, `content["odd key"]`; long keys are shortened so the field name stays readable. */
function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  const points = Array.from(key);
  const shown = points.length > 40 ? `${points.slice(0, 40).join('')}…` : key;
  if (parent === '') return shown;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(shown)}]`;
}

export interface JsonInspection {
  /** Set when some field nests deeper than JSON_DEPTH_MAX; the walk stopped there. */
  tooDeep?: FieldProblem;
  /** Strings (values and object keys, at any depth) the database would not store as sent; at most STRING_PROBLEMS_MAX. */
  unstorableStrings: FieldProblem[];
}

/**
 * Walks `value` with its own stack, not recursion, so no input can overflow the call stack; it stops
 * at the first field nested deeper than JSON_DEPTH_MAX. The fields of `value` are level 1.
 * Strings inside `content` are stored JSON-escaped and would survive a plain read, but SQLite's JSON
 * functions would not: json_extract returns "a\u0000b" cut to "a", and turns "\ud800" into invalid
 * UTF-8 that makes the libSQL client panic and abort the process. So every string follows one rule.
 */
export function inspectJson(value: unknown): JsonInspection {
  const unstorableStrings: FieldProblem[] = [];
  const note = (field: string, reason: string | undefined, what = '') => {
    if (reason !== undefined && unstorableStrings.length < STRING_PROBLEMS_MAX) unstorableStrings.push({ field, message: `${what}${reason}` });
  };
  type Frame = { value: unknown; path: string; depth: number; top: string; key?: string };
  const stack: Frame[] = [{ value, path: '', depth: 0, top: '(document)' }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const v = frame.value;
    if (frame.key !== undefined) note(frame.path, unstorableTextReason(frame.key), 'has a key that ');
    if (typeof v === 'string') {
      note(frame.path || '(document)', unstorableTextReason(v));
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (frame.depth > JSON_DEPTH_MAX) {
      return { tooDeep: { field: frame.top, message: `nests objects and arrays more than ${JSON_DEPTH_MAX} levels deep; flatten it` }, unstorableStrings };
    }
    const depth = frame.depth + 1;
    // Children are pushed last-first so problems come out in document order.
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: childPath(frame.path, i), depth, top: frame.depth === 0 ? '(document)' : frame.top });
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      const path = childPath(frame.path, key);
      stack.push({ value: (v as Record<string, unknown>)[key], path, depth, top: frame.depth === 0 ? key : frame.top, key });
    }
  }
  return { unstorableStrings };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every problem with `value` as a document input; empty when it is valid. */
export function validateDocumentInput(value: unknown, { requireId = false } = {}): FieldProblem[] {
  if (!isPlainObject(value)) return [{ field: '(document)', message: 'must be a JSON object' }];
  const { tooDeep, unstorableStrings } = inspectJson(value);
  // Stop before anything below recurses into the value (JSON.stringify would overflow the stack).
  if (tooDeep) return [tooDeep, ...unstorableStrings];
  const problems: FieldProblem[] = [...unstorableStrings];
  const allowed = new Set(['id', 'type', 'name', 'content']);
  for (const key of Object.keys(value)) if (!allowed.has(key)) problems.push({ field: key, message: 'is not a document field (allowed: id, type, name, content)' });
  if (value.id === undefined) {
    if (requireId) problems.push({ field: 'id', message: 'is required' });
  } else if (typeof value.id !== 'string' || !new RegExp(ID_PATTERN).test(value.id)) {
    problems.push({ field: 'id', message: `must match ${ID_PATTERN} (lowercase letters, digits, ":", ".", "_", "-")` });
  }
  if (!DOCUMENT_TYPES.includes(value.type as DocumentType)) {
    problems.push({ field: 'type', message: `must be one of ${DOCUMENT_TYPES.join(', ')} (got ${JSON.stringify(value.type)})` });
  }
  if (typeof value.name !== 'string' || value.name.trim() === '') problems.push({ field: 'name', message: 'must be a non-empty string' });
  else if (value.name.length > NAME_MAX) problems.push({ field: 'name', message: `must be at most ${NAME_MAX} characters` });
  if (!isPlainObject(value.content)) problems.push({ field: 'content', message: 'must be a JSON object' });
  else if (Buffer.byteLength(JSON.stringify(value.content)) > CONTENT_MAX_BYTES) problems.push({ field: 'content', message: `must be at most ${CONTENT_MAX_BYTES} bytes of JSON` });
  return problems;
}
