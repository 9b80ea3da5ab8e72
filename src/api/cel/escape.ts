// How a schema property name is spelled in a CEL rule. The API server
// exposes an object's declared properties as fields of `self`; a name that
// is a CEL reserved word or holds characters an identifier cannot is
// escaped (`namespace` is `__namespace__` in the parentRefs rules), and a
// name that cannot be escaped is not visible to rules at all. Same scheme
// as the API server's, so that rules written for it read the same fields.

/** Words the CEL grammar reserves; a property so named is reached as `__word__`. */
const RESERVED = new Set([
  'true', 'false', 'null', 'in',
  'as', 'break', 'const', 'continue', 'else', 'for', 'function', 'if', 'import', 'let',
  'loop', 'package', 'namespace', 'return', 'var', 'void', 'while',
]);

const ESCAPES: Record<string, string> = { '__': '__underscores__', '.': '__dot__', '-': '__dash__', '/': '__slash__' };

/** The CEL field name of property `name`, or null when a rule cannot name it. */
export function escapePropertyName(name: string): string | null {
  if (name === '' || (name[0] >= '0' && name[0] <= '9')) return null;
  if (RESERVED.has(name)) return `__${name}__`;
  let ok = true;
  const out = name.replace(/__|[-./]|[^a-zA-Z0-9_]/g, (s) => {
    const e = ESCAPES[s];
    if (e === undefined) ok = false;
    return e ?? '';
  });
  return ok ? out : null;
}
