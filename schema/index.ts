export * from './documents.ts';
export * from './validation.ts';
