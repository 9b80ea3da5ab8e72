// Strings kept for as long as a config is loaded, stored compactly. With
// thousands of objects loaded, how V8 holds them adds up to megabytes:
// - a YAML parser gives every occurrence of a value its own string, so
//   50,000 `PathPrefix` are 50,000 strings;
// - a string built by concatenation (a template literal, randomUUID()) is
//   kept as a tree of its pieces, several times the size of its characters.

/** Values longer than this are rarely repeated (certificates, long regexes) and are not worth hashing to share. */
const MAX_INTERNED_LENGTH = 256;

/** A flat copy of `s`: its characters in one piece, whatever it was built from. */
export function flatString(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

/**
 * Replaces, in place, every string value of `value` (parsed JSON or YAML:
 * objects, arrays and scalars) by the first equal string `pool` has seen,
 * so that the `PathPrefix`, `Service` and namespace names of thousands of
 * objects are one string each. Strings are immutable, so sharing them
 * changes nothing but memory. Keys need no help: V8 already shares them.
 */
export function internStrings(value: unknown, pool: Map<string, string>): void {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v === 'string') value[i] = internString(v, pool);
      else internStrings(v, pool);
    }
  } else if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      const v = o[k];
      // (Assigning a string to a key `__proto__` would be a no-op, not a change of prototype.)
      if (typeof v === 'string') o[k] = internString(v, pool);
      else internStrings(v, pool);
    }
  }
}

/** The first string equal to `s` that `pool` has seen. */
export function internString(s: string, pool: Map<string, string>): string {
  if (s.length > MAX_INTERNED_LENGTH) return s;
  const known = pool.get(s);
  if (known !== undefined) return known;
  pool.set(s, s);
  return s;
}
