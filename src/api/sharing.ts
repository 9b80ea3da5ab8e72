// Equal parts of loaded objects held once. Routes are mostly written from
// templates: thousands of them repeat the same parentRefs, the same
// `path: {type: PathPrefix, value: /}` matches, the same backendRefs to
// a shared Service, often whole rules. Parsed, each occurrence is objects
// and arrays of its own: with 5,000 routes of 10 rules, ~20 MB of the
// control plane's heap held copies. Loaded objects are never changed
// (generations.ts relies on it too); the parts held here are frozen so
// that a change would fail loudly instead of changing every object that
// shares the part.
import { internString, internStrings } from './strings.ts';

/** What one load has seen; dropped with the load, so nothing outlives the objects that use it. */
export interface SharedValues {
  strings: Map<string, string>;
  /** A part by its shape: its keys and the identity of each value. */
  parts: Map<string, object>;
  /** The identity of each part seen, a number unique within the pool. */
  ids: WeakMap<object, number>;
  nextId: number;
}

export function newSharedValues(): SharedValues {
  return { strings: new Map(), parts: new Map(), ids: new WeakMap(), nextId: 0 };
}

/** Fields that are the object's own and change in place (metadata is stamped), or are not ours. */
const UNSHARED = new Set(['apiVersion', 'kind', 'metadata', 'status']);

/**
 * Interns the strings of `object` everywhere, and replaces each part of
 * its other fields (spec, and data, endpoints, ports of the kinds that
 * have them at the top) by an equal part seen before in this pool.
 */
export function shareValues(object: Record<string, unknown>, pool: SharedValues): void {
  for (const key of Object.keys(object)) {
    const v = object[key];
    if (UNSHARED.has(key) || key === '__proto__') internStrings(v, pool.strings);
    else object[key] = share(v, pool);
  }
}

function share(value: unknown, pool: SharedValues): unknown {
  if (typeof value === 'string') return internString(value, pool.strings);
  if (value === null || typeof value !== 'object') return value;
  let shape: string;
  if (Array.isArray(value)) {
    shape = '[';
    for (let i = 0; i < value.length; i++) {
      value[i] = share(value[i], pool);
      shape += `${identity(value[i], pool)},`;
    }
  } else {
    const o = value as Record<string, unknown>;
    // An own `__proto__` (JSON can make one) cannot be given a shared value: assigning an object to it
    // would change the prototype. Such an object keeps its own values and is shared with none.
    if (Object.hasOwn(o, '__proto__')) {
      internStrings(o, pool.strings);
      pool.ids.set(o, pool.nextId++);
      return o;
    }
    shape = '{';
    for (const k of Object.keys(o)) {
      o[k] = share(o[k], pool);
      shape += `${JSON.stringify(k)}:${identity(o[k], pool)},`;
    }
  }
  const known = pool.parts.get(shape);
  if (known !== undefined) return known;
  pool.ids.set(value, pool.nextId++);
  pool.parts.set(shape, Object.freeze(value));
  return value;
}

/** A scalar by its JSON text (typed: 1 and "1" differ), a part by its id. */
function identity(value: unknown, pool: SharedValues): string {
  if (value !== null && typeof value === 'object') return `#${pool.ids.get(value)}`;
  return value === undefined ? 'u' : JSON.stringify(value);
}
