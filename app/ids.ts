import { randomBytes, randomUUID } from 'node:crypto';
import type { DocumentType } from '../schema/documents.ts';

/** "Ada Lovelace!" -> "ada-lovelace"; accents folded, anything else becomes a dash. */
export function slug(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 80)
    .replace(/-+$/, '');
}

/**
 * A readable id that still matches ID_PATTERN: `persona:ada-lovelace-3f9c2a1b`. The random tail keeps
 * it unique after a rename frees the name; a name with no latin letters or digits gets a uuid.
 */
export function newDocumentId(type: DocumentType, name: string): string {
  const s = slug(name);
  return s === '' ? `${type}:${randomUUID()}` : `${type}:${s}-${randomBytes(4).toString('hex')}`;
}
