import { DOCUMENT_TYPES, type DocumentContent, type DocumentType } from './documents.ts';

/**
 * What a document looks like on the way in, shared by the seed runner and the HTTP API so both refuse
 * the same inputs with the same field names. `documentInputJsonSchema` is the same rule set for
 * Fastify's request validation.
 */
export const NAME_MAX = 200;
export const CONTENT_MAX_BYTES = 64 * 1024;
export const ID_PATTERN = '^[a-z0-9][a-z0-9:._-]{0,127}$';

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

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every problem with `value` as a document input; empty when it is valid. */
export function validateDocumentInput(value: unknown, { requireId = false } = {}): FieldProblem[] {
  if (!isPlainObject(value)) return [{ field: '(document)', message: 'must be a JSON object' }];
  const problems: FieldProblem[] = [];
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
