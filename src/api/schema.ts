// The CRD schemas (src/api/crds) and a generic walker over an
// openAPIV3Schema that does what the Kubernetes API server does with a
// custom resource on the way in: prune unknown fields, apply defaults
// (structural defaulting), validate. x-kubernetes-validations (CEL) are not
// run here: src/api/rules.ts runs them, when this walker found no blocking
// error (SchemaCheck).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import jsyaml from 'js-yaml';
import { fieldPath, indexPath, jsonType, keyPath, showValue } from './errors.ts';
import type { FieldError } from './errors.ts';

/** The subset of an OpenAPI v3 schema (as CRDs use it) that the walker understands. */
export interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  nullable?: boolean;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  oneOf?: Schema[];
  anyOf?: Schema[];
  allOf?: Schema[];
  not?: Schema;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: string;
  'x-kubernetes-validations'?: { rule: string; message?: string; messageExpression?: string; reason?: string; fieldPath?: string; optionalOldSelf?: boolean }[];
}

/** One CRD: a group/kind and the schema of each version it serves. */
export interface CRD {
  group: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  /** Served versions, in the CRD's order. */
  versions: string[];
  storageVersion: string;
  /** `gateway.networking.k8s.io/bundle-version` of the file. */
  bundleVersion: string;
  schemas: Map<string, Schema>;
}

export const CRD_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crds');

let cache: Map<string, CRD> | null = null;

/** Every CRD in src/api/crds by kind; read and parsed once, on first use. */
export function crds(): Map<string, CRD> {
  if (cache) return cache;
  const out = new Map<string, CRD>();
  for (const file of fs.readdirSync(CRD_DIR).sort()) {
    if (!file.endsWith('.yaml')) continue;
    // Through JSON and back: js-yaml's strings are slices of the file's
    // text, so the schemas kept would keep all 11 files' text (1.3 MB,
    // descriptions included) for the life of the process.
    const doc = JSON.parse(JSON.stringify(jsyaml.load(fs.readFileSync(path.join(CRD_DIR, file), 'utf8'), { schema: jsyaml.CORE_SCHEMA }))) as any;
    if (doc?.kind !== 'CustomResourceDefinition') continue;
    const crd: CRD = {
      group: doc.spec.group,
      kind: doc.spec.names.kind,
      plural: doc.spec.names.plural,
      namespaced: doc.spec.scope === 'Namespaced',
      versions: [],
      storageVersion: '',
      bundleVersion: doc.metadata?.annotations?.['gateway.networking.k8s.io/bundle-version'] ?? '',
      schemas: new Map(),
    };
    for (const v of doc.spec.versions) {
      if (v.storage) crd.storageVersion = v.name;
      if (!v.served) continue;
      crd.versions.push(v.name);
      crd.schemas.set(v.name, addOlderFields(crd.kind, stripDescriptions(v.schema.openAPIV3Schema)));
    }
    out.set(crd.kind, crd);
  }
  cache = out;
  return out;
}

/**
 * Fields of released bundles still in use that the vendored CRDs dropped
 * without a counterpart, added back so that an object using one keeps it
 * (compat.ts warns about each use): HTTPRoute and GRPCRoute
 * `sessionPersistence.idleTimeout` of v1.4 and v1.5, with its schema there.
 */
function addOlderFields(kind: string, s: Schema): Schema {
  if (kind !== 'HTTPRoute' && kind !== 'GRPCRoute') return s;
  const sp = s.properties?.spec?.properties?.rules?.items?.properties?.sessionPersistence;
  if (sp?.properties && !Object.hasOwn(sp.properties, 'idleTimeout')) {
    sp.properties.idleTimeout = { type: 'string', pattern: '^([0-9]{1,5}(h|m|s|ms)){1,4}$' };
  }
  return s;
}

/**
 * Drops the (large) doc strings from a schema, walking only schema
 * positions: a property named `description` (GatewayClass has one) stays.
 */
function stripDescriptions(s: any): Schema {
  if (!s || typeof s !== 'object') return s;
  if (typeof s.description === 'string') delete s.description;
  for (const p of Object.values(s.properties ?? {})) stripDescriptions(p);
  if (s.items) stripDescriptions(s.items);
  if (s.additionalProperties && typeof s.additionalProperties === 'object') stripDescriptions(s.additionalProperties);
  if (s.not) stripDescriptions(s.not);
  for (const k of ['oneOf', 'anyOf', 'allOf']) for (const sub of s[k] ?? []) stripDescriptions(sub);
  return s;
}

/** `gateway.networking.k8s.io/v1` -> group and version; `v1` -> core group ''. */
export function splitAPIVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.lastIndexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

export type SchemaLookup =
  | { found: true; crd: CRD; version: string; schema: Schema }
  | { found: false; crd?: CRD; reason?: string };

/**
 * The schema for an object of `apiVersion` and `kind`. Not found without a
 * reason: no CRD has this group and kind (the object is not ours). Not
 * found with a reason: the kind is ours but the version is not served.
 */
export function schemaFor(apiVersion: string, kind: string): SchemaLookup {
  const crd = crds().get(kind);
  const { group, version } = splitAPIVersion(apiVersion);
  if (!crd || crd.group !== group) return { found: false };
  const schema = crd.schemas.get(version);
  if (!schema) {
    return { found: false, crd, reason: `version ${version} of ${kind} is not served (served: ${crd.versions.map((v) => `${group}/${v}`).join(', ')})` };
  }
  return { found: true, crd, version, schema };
}

// ---------------------------------------------------------------- pruning

type JSONObject = Record<string, unknown>;

function isObject(v: unknown): v is JSONObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function schemaOfProperty(s: Schema, key: string): Schema | undefined {
  if (s.properties && Object.hasOwn(s.properties, key)) return s.properties[key];
  if (isObject(s.additionalProperties)) return s.additionalProperties as Schema;
  return undefined;
}

/**
 * Drops, in place, every field the schema does not know (unless
 * x-kubernetes-preserve-unknown-fields) and every null that is neither
 * nullable nor has a default (defaulting replaces those), as the API server
 * does before defaulting. `skip` names fields of this object not to touch
 * (the root's `metadata`, which is validated by hand). `dropped`, when
 * given, collects the path of each unknown field dropped (not the nulls),
 * up to MAX_DROPPED_REPORTED of them, as the API server's "unknown field"
 * warnings do; `at` is the path of `value`.
 */
export function prune(value: unknown, s: Schema, skip?: ReadonlySet<string>, dropped?: Dropped, at = ''): void {
  if (Array.isArray(value)) {
    if (s.items) for (let i = 0; i < value.length; i++) prune(value[i], s.items, undefined, dropped, dropped ? indexPath(at, i) : '');
    return;
  }
  if (!isObject(value) || (s.type !== undefined && s.type !== 'object')) return;
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  const additional = isObject(s.additionalProperties);
  for (const key of Object.keys(value)) {
    if (skip?.has(key)) continue;
    const child = schemaOfProperty(s, key);
    if (!child) {
      if (!preserve && s.additionalProperties !== true) {
        delete value[key];
        if (dropped) {
          if (dropped.paths.length < MAX_DROPPED_REPORTED) dropped.paths.push(fieldPath(at, key));
          else dropped.more++;
        }
      }
      continue;
    }
    if (value[key] === null && child.default === undefined && !child.nullable) {
      delete value[key];
      continue;
    }
    prune(value[key], child, undefined, dropped, dropped ? (additional && !(s.properties && Object.hasOwn(s.properties, key)) ? keyPath(at, key) : fieldPath(at, key)) : '');
  }
}

/** Unknown fields prune() dropped: the first MAX_DROPPED_REPORTED paths, and how many more. */
export interface Dropped {
  paths: string[];
  more: number;
}

/** Unknown fields named one by one; past this many, counted (an object of many unknown fields is not a list of as many warnings). */
export const MAX_DROPPED_REPORTED = 16;

// ---------------------------------------------------------------- defaulting

/**
 * Applies `default`s in place, the way the API server's structural
 * defaulting does: a property's default is set where the property is
 * absent (or a non-nullable null) and its parent object exists; then every
 * property, defaulted or not, is defaulted in turn; defaults under `items`
 * apply to each item.
 */
/**
 * A default to put in an object: its own copy when it is an object or an
 * array (the object may be changed later), the value itself when it is a
 * string, number or boolean: those are immutable, and a copy of a string
 * would be one more string per defaulted field.
 */
function copyOfDefault(d: unknown): unknown {
  return d !== null && typeof d === 'object' ? structuredClone(d) : d;
}

export function applyDefaults(value: unknown, s: Schema, skip?: ReadonlySet<string>): void {
  if (Array.isArray(value)) {
    if (s.items) for (const item of value) applyDefaults(item, s.items);
    return;
  }
  if (!isObject(value)) return;
  if (s.properties) {
    for (const [key, prop] of Object.entries(s.properties)) {
      if (prop.default === undefined || skip?.has(key)) continue;
      if (value[key] === undefined || (value[key] === null && !prop.nullable)) value[key] = copyOfDefault(prop.default);
    }
  }
  for (const [key, v] of Object.entries(value)) {
    if (skip?.has(key)) continue;
    const child = schemaOfProperty(s, key);
    if (child) applyDefaults(v, child);
  }
}

// ---------------------------------------------------------------- validation

const regexCache = new Map<string, RegExp>();

/**
 * The RegExp for a schema `pattern`. CRD patterns are Go RE2, unanchored
 * (like RegExp.test). Every pattern in the Gateway API CRDs compiles as a
 * JS unicode RegExp with the same meaning (test/api/schema.test.ts checks);
 * a pattern that does not is retried without the `u` flag.
 */
export function patternRegExp(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    try {
      re = new RegExp(pattern, 'u');
    } catch {
      re = new RegExp(pattern);
    }
    regexCache.set(pattern, re);
  }
  return re;
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** IPv4 / IPv6 the way Go's net.ParseIP takes them: no zone, no leading zeros. */
export function isIPv4(s: string): boolean {
  return net.isIPv4(s);
}

export function isIPv6(s: string): boolean {
  return !s.includes('%') && net.isIPv6(s);
}

/** Format checks the API server makes that are cheap to make here. */
function formatError(format: string, v: string): string | null {
  switch (format) {
    case 'ipv4': return isIPv4(v) ? null : 'must be a valid IPv4 address';
    case 'ipv6': return isIPv6(v) ? null : 'must be a valid IPv6 address';
    case 'date-time': return DATE_TIME.test(v) && !Number.isNaN(Date.parse(v.replace(' ', 'T'))) ? null : 'must be an RFC 3339 date-time';
    default: return null;
  }
}

function typeMatches(type: Schema['type'], v: unknown): boolean {
  switch (type) {
    case undefined: return true;
    case 'object': return isObject(v);
    case 'array': return Array.isArray(v);
    case 'string': return typeof v === 'string';
    case 'boolean': return typeof v === 'boolean';
    case 'integer': return typeof v === 'number' && Number.isInteger(v);
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    default: return true;
  }
}

function runeLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Canonical JSON (sorted keys), for set and enum comparisons. */
export function canonicalJSON(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (isObject(x)) {
      const sorted: JSONObject = {};
      for (const key of Object.keys(x).sort()) sorted[key] = x[key];
      return sorted;
    }
    return x;
  });
}

function depth(field: string): number {
  return field.split(/[.[]/).length;
}

/**
 * What the walker found beyond the errors: `blocking` is set by an error
 * of a kind after which the API server does not run a CRD's CEL rules
 * (a wrong type or null, a value not in the enum, a required field
 * missing, a string, list or map over its maximum), as rules may rely on
 * those; other errors (patterns, minimums, duplicates) leave them to run.
 */
export interface SchemaCheck {
  blocking: boolean;
}

/**
 * Validates `value` (already pruned and defaulted) against `s`, appending
 * one FieldError per problem, paths from `at`. `skip` names fields of this
 * object not to look into (the root's `metadata`); `check` learns whether
 * an error was a blocking one.
 */
export function validateSchema(value: unknown, s: Schema, at: string, errors: FieldError[], skip?: ReadonlySet<string>, check?: SchemaCheck): void {
  if (value === null) {
    if (!s.nullable && s.type !== undefined) {
      errors.push({ field: at, reason: `must be of type ${s.type}, not null` });
      if (check) check.blocking = true;
    }
    return;
  }
  if (!typeMatches(s.type, value)) {
    errors.push({ field: at, reason: `must be of type ${s.type}, not ${jsonType(value)}` });
    if (check) check.blocking = true;
    return;
  }
  if (s.enum && !s.enum.some((e) => canonicalJSON(e) === canonicalJSON(value))) {
    if (check) check.blocking = true;
    errors.push({ field: at, reason: `unsupported value ${showValue(value)}: must be one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}` });
  }
  if (typeof value === 'string') {
    const n = s.minLength !== undefined || s.maxLength !== undefined ? runeLength(value) : 0;
    if (s.minLength !== undefined && n < s.minLength) {
      errors.push({ field: at, reason: s.minLength === 1 ? 'must not be empty' : `must be at least ${plural(s.minLength, 'character')} long` });
    }
    if (s.maxLength !== undefined && n > s.maxLength) {
      if (check) check.blocking = true;
      errors.push({ field: at, reason: `must be at most ${plural(s.maxLength, 'character')} long (is ${n})` });
    }
    if (s.pattern !== undefined && !patternRegExp(s.pattern).test(value)) {
      errors.push({ field: at, reason: `invalid value ${showValue(value)}: must match the regular expression ${s.pattern}` });
    }
    if (s.format !== undefined) {
      const e = formatError(s.format, value);
      if (e) errors.push({ field: at, reason: `invalid value ${showValue(value)}: ${e}` });
    }
  }
  if (typeof value === 'number') {
    if (s.minimum !== undefined && (s.exclusiveMinimum ? value <= s.minimum : value < s.minimum)) {
      errors.push({ field: at, reason: s.exclusiveMinimum ? `must be greater than ${s.minimum}` : `must be at least ${s.minimum}` });
    }
    if (s.maximum !== undefined && (s.exclusiveMaximum ? value >= s.maximum : value > s.maximum)) {
      errors.push({ field: at, reason: s.exclusiveMaximum ? `must be less than ${s.maximum}` : `must be at most ${s.maximum}` });
    }
  }
  if (Array.isArray(value)) validateArray(value, s, at, errors, check);
  if (isObject(value)) validateObjectFields(value, s, at, errors, skip, check);
  if (s.allOf) for (const sub of s.allOf) validateSchema(value, sub, at, errors, undefined, check);
  if (s.anyOf) {
    const branches = s.anyOf.map((sub) => branchErrors(value, sub, at));
    if (!branches.some((b) => b.length === 0)) errors.push(...mergeBranches(branches, 'or'));
  }
  if (s.oneOf) {
    const branches = s.oneOf.map((sub) => branchErrors(value, sub, at));
    const matched = branches.filter((b) => b.length === 0).length;
    if (matched === 0) errors.push(...mergeBranches(branches, 'or'));
    else if (matched > 1) errors.push({ field: at, reason: `must match exactly one of the allowed forms, matches ${matched}` });
  }
  if (s.not && branchErrors(value, s.not, at).length === 0) {
    const reason = s.not.enum ? `must not be ${s.not.enum.map((e) => JSON.stringify(e)).join(' or ')}` : 'matches a form that is not allowed';
    errors.push({ field: at, reason });
  }
}

function branchErrors(value: unknown, s: Schema, at: string): FieldError[] {
  const errors: FieldError[] = [];
  validateSchema(value, s, at, errors);
  return errors;
}

/**
 * When no branch of anyOf/oneOf matches: report the branch that got
 * furthest (its first error is deepest), joining the reasons of branches
 * that failed at that same field ("must be a valid IPv4 address or must be
 * a valid IPv6 address").
 */
function mergeBranches(branches: FieldError[][], joiner: string): FieldError[] {
  let best = branches[0];
  for (const b of branches) if (depth(b[0].field) > depth(best[0].field)) best = b;
  if (best.length !== 1) return best;
  const same = branches.filter((b) => b.length === 1 && b[0].field === best[0].field);
  const reasons = [...new Set(same.map((b) => b[0].reason))];
  // "invalid value "x": A" + "invalid value "x": B" -> "invalid value "x": A or B"
  const prefix = /^invalid value .*?: /.exec(reasons[0])?.[0];
  if (prefix && reasons.every((r) => r.startsWith(prefix))) {
    return [{ field: best[0].field, reason: prefix + reasons.map((r) => r.slice(prefix.length)).join(` ${joiner} `) }];
  }
  return [{ field: best[0].field, reason: reasons.join(` ${joiner} `) }];
}

function validateArray(value: unknown[], s: Schema, at: string, errors: FieldError[], check?: SchemaCheck): void {
  if (s.minItems !== undefined && value.length < s.minItems) {
    errors.push({ field: at, reason: `must have at least ${plural(s.minItems, 'item')}` });
  }
  if (s.maxItems !== undefined && value.length > s.maxItems) {
    if (check) check.blocking = true;
    errors.push({ field: at, reason: `must have at most ${plural(s.maxItems, 'item')} (has ${value.length})` });
  }
  if (s.items) value.forEach((item, i) => validateSchema(item, s.items!, indexPath(at, i), errors, undefined, check));
  const listType = s['x-kubernetes-list-type'];
  if (listType === 'set') {
    const seen = new Set<string>();
    value.forEach((item, i) => {
      const key = canonicalJSON(item);
      if (seen.has(key)) errors.push({ field: indexPath(at, i), reason: `duplicate value ${showValue(item)}` });
      seen.add(key);
    });
  } else if (listType === 'map') {
    const keys = s['x-kubernetes-list-map-keys'] ?? [];
    const seen = new Set<string>();
    value.forEach((item, i) => {
      if (!isObject(item)) return;
      const key = canonicalJSON(keys.map((k) => item[k] ?? null));
      if (seen.has(key)) {
        const desc = keys.map((k) => `${k} ${showValue(item[k] ?? null)}`).join(', ');
        errors.push({ field: indexPath(at, i), reason: `duplicate entry with ${desc}` });
      }
      seen.add(key);
    });
  }
}

function validateObjectFields(value: JSONObject, s: Schema, at: string, errors: FieldError[], skip?: ReadonlySet<string>, check?: SchemaCheck): void {
  for (const r of s.required ?? []) {
    if (value[r] === undefined) {
      errors.push({ field: fieldPath(at, r), reason: 'is required' });
      if (check) check.blocking = true;
    }
  }
  const count = Object.keys(value).length;
  if (s.minProperties !== undefined && count < s.minProperties) {
    errors.push({ field: at, reason: `must have at least ${plural(s.minProperties, 'entry')}`.replace('entrys', 'entries') });
  }
  if (s.maxProperties !== undefined && count > s.maxProperties) {
    if (check) check.blocking = true;
    errors.push({ field: at, reason: `must have at most ${plural(s.maxProperties, 'entry')}`.replace('entrys', 'entries') + ` (has ${count})` });
  }
  for (const [key, v] of Object.entries(value)) {
    if (skip?.has(key)) continue;
    const prop = s.properties && Object.hasOwn(s.properties, key) ? s.properties[key] : undefined;
    if (prop) validateSchema(v, prop, fieldPath(at, key), errors, undefined, check);
    else if (isObject(s.additionalProperties)) validateSchema(v, s.additionalProperties, keyPath(at, key), errors, undefined, check);
  }
}

/** Every `pattern` in a schema, for tests and audits. */
export function collectPatterns(s: Schema, out = new Set<string>()): Set<string> {
  if (s.pattern) out.add(s.pattern);
  for (const p of Object.values(s.properties ?? {})) collectPatterns(p, out);
  if (s.items) collectPatterns(s.items, out);
  if (isObject(s.additionalProperties)) collectPatterns(s.additionalProperties as Schema, out);
  for (const sub of [...(s.oneOf ?? []), ...(s.anyOf ?? []), ...(s.allOf ?? []), ...(s.not ? [s.not] : [])]) collectPatterns(sub, out);
  return out;
}
