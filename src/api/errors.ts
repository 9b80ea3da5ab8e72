// Field errors: what validation says about one field of one object, and the
// JSON paths (from the object root) that name the field.

/** One problem with one field: `{ field: 'spec.listeners[1].port', reason: 'must be at most 65535' }`. */
export interface FieldError {
  /** JSON path from the object root; '' for the object itself. */
  field: string;
  reason: string;
}

/** `spec` + `listeners` -> `spec.listeners`; '' + `spec` -> `spec`. */
export function fieldPath(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

/** `spec.listeners` + 1 -> `spec.listeners[1]`. */
export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** An entry of a map: `metadata.labels` + `app` -> `metadata.labels[app]`. */
export function keyPath(parent: string, key: string): string {
  return `${parent}[${key}]`;
}

/** A value, shortened for a message: `"abc"`, `42`, `{...}`. */
export function showValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 61)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return '[...]';
  return '{...}';
}

/** The JSON type name of a value as the schema's `type` names it. */
export function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}
