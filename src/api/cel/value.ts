// A JSON value as a CEL rule sees it, typed by its schema the way the API
// server types it: integers are CEL ints (bigint), numbers doubles; an
// object with declared properties shows only those, under their escaped
// names (escape.ts), absent ones absent (so `has()` is false and reading
// one is a "no such key" error); a map (additionalProperties) keeps its
// keys as they are; a list is a list of its items. Maps and lists are
// handed over as the evaluator's own (celMap, celList), which it would
// otherwise wrap anew on every access.
import { celList, celMap } from '@bufbuild/cel';
import type { CelInput } from '@bufbuild/cel';
import type { Schema } from '../schema.ts';
import { escapePropertyName } from './escape.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A schema property's CEL name, per schema (escaping runs once per property, not per value). */
const escapedNames = new WeakMap<Schema, Map<string, string | null>>();

function celNameOf(s: Schema, key: string): string | null {
  let names = escapedNames.get(s);
  if (!names) {
    names = new Map();
    escapedNames.set(s, names);
  }
  let n = names.get(key);
  if (n === undefined) {
    n = escapePropertyName(key);
    names.set(key, n);
  }
  return n;
}

/** A JSON number without a schema type: an int when it is a whole number, as the API server decodes JSON. */
function untypedNumber(v: number): CelInput {
  return Number.isSafeInteger(v) ? BigInt(v) : v;
}

/**
 * Converts value to what CEL sees, typed by schema `s` (undefined: no
 * schema, every value as JSON decodes it). `memo` holds the conversion of
 * each object and array already converted, so that the rules of a parent
 * and of its children share one conversion.
 */
export function toCel(v: unknown, s: Schema | undefined, memo: WeakMap<object, CelInput>): CelInput {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    if (s?.type === 'integer' || (s?.type === undefined && Number.isInteger(v))) return Number.isSafeInteger(v) ? BigInt(v) : v;
    return s?.type === 'number' ? v : untypedNumber(v);
  }
  if (typeof v !== 'object') return null;
  const done = memo.get(v);
  if (done !== undefined) return done;
  let out: CelInput;
  if (Array.isArray(v)) {
    out = celList(v.map((item) => toCel(item, s?.items, memo)));
  } else {
    const m = new Map<string, CelInput>();
    const o = v as Obj;
    const props = s?.properties;
    const additional = s && typeof s.additionalProperties === 'object' ? s.additionalProperties : undefined;
    const dynamic = !s || (!props && !additional && (s['x-kubernetes-preserve-unknown-fields'] === true || s.type === undefined || s.additionalProperties === true));
    for (const key of Object.keys(o)) {
      const child = o[key];
      if (child === undefined) continue;
      if (props && Object.hasOwn(props, key)) {
        const name = celNameOf(s!, key);
        if (name !== null) m.set(name, toCel(child, props[key], memo));
      } else if (additional) {
        m.set(key, toCel(child, additional, memo));
      } else if (dynamic) {
        m.set(key, toCel(child, undefined, memo));
      }
    }
    out = celMap(m);
  }
  memo.set(v, out);
  return out;
}

/** The root object as its rules see it: metadata reduced to name and generateName, as the API server shows it. */
export function rootToCel(o: Obj, s: Schema, memo: WeakMap<object, CelInput>): CelInput {
  const meta = isObj(o.metadata) ? o.metadata : {};
  const shown: Obj = {};
  if (typeof meta.name === 'string') shown.name = meta.name;
  if (typeof meta.generateName === 'string') shown.generateName = meta.generateName;
  const copy: Obj = { ...o, metadata: shown };
  const metaSchema: Schema = { type: 'object', properties: { name: { type: 'string' }, generateName: { type: 'string' } } };
  const root: Schema = { ...s, properties: { ...s.properties, metadata: metaSchema } };
  const out = toCel(copy, root, memo);
  memo.set(o, out);
  return out;
}
