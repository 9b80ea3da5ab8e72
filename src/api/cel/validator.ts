// The CRDs' `x-kubernetes-validations` run on an object, with the API
// server's semantics:
// - a rule runs where it is attached, with `self` the value there: once
//   per item for a rule under `items`, once per value for one under
//   `additionalProperties`, not at all where the value is absent;
// - a rule that evaluates to false reports its `message` (or its
//   `messageExpression`'s result; without either, "failed rule: <rule>")
//   at the schema path, or at `fieldPath` below it when the rule has one;
//   its `reason` (Forbidden, Required, Duplicate) prefixes the message as
//   the API server's error types read;
// - a rule that fails to evaluate (a field it reads is absent) reports
//   "<error> evaluating rule: <message>";
// - transition rules (those reading `oldSelf`) are skipped: they compare
//   an update with the stored object, and objects from files, or from the
//   API server that already ran them, have no previous version here;
// - each rule has a cost limit and the object a budget (cost.ts); the
//   first rule over either stops all rule evaluation for the object, with
//   an error.
// Rules compile once per schema (per CRD version) and are kept with it.
import type { CelInput } from '@bufbuild/cel';
import type { Schema } from '../schema.ts';
import type { FieldError } from '../errors.ts';
import { fieldPath, indexPath, keyPath } from '../errors.ts';
import { compile, evaluationError, type Compiled } from './program.ts';
import { COST_EXCEEDED, DEFAULT_COST_LIMITS, metered, type CostLimits } from './cost.ts';
import { rootToCel, toCel } from './value.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One `x-kubernetes-validations` entry as the CRD writes it. */
export interface RuleSpec {
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
  fieldPath?: string;
  optionalOldSelf?: boolean;
}

/** A step of a rule's `fieldPath`: a property (`.name`, `['name']`) or a map key (`['key']`). */
type Step = { property: string } | { key: string };

interface CompiledRule {
  spec: RuleSpec;
  compiled: Compiled;
  messageExpression: Compiled | null;
  /** Set when the rule's fieldPath is invalid for the schema (the API server refuses such a CRD). */
  fieldPathError: string | null;
  fieldPath: Step[];
  /** `Forbidden: `, `Required value: `, `Duplicate value: ` or ''. */
  reasonPrefix: string;
}

/** The rules of one schema node and what lies below it. */
interface Node {
  /** Results of this node's rules by value (see MAX_KEPT_RESULTS). */
  kept: Map<string, Kept>;
  rules: CompiledRule[];
  /**
   * Whether every schema node from here down has a type (no
   * preserve-unknown-fields, no int-or-string): then a valid value's JSON
   * is exact (the schema refuses non-finite numbers), and names it.
   */
  typed: boolean;
  /** Whether this node or any node below it has rules: a subtree without any is not walked. */
  any: boolean;
  properties: Map<string, Node> | null;
  additional: Node | null;
  items: Node | null;
}

const REASONS: Record<string, string> = {
  FieldValueInvalid: '',
  FieldValueForbidden: 'Forbidden: ',
  FieldValueRequired: 'Required value: ',
  FieldValueDuplicate: 'Duplicate value: ',
};

/** messageExpression results longer than this are cut: a message is one line for a person to read. */
const MAX_MESSAGE_CHARS = 1024;

/** `.a.b['c']` -> steps, checked against the schema the rule is attached to. */
function parseFieldPath(path: string, s: Schema): { steps: Step[]; error: string | null } {
  const steps: Step[] = [];
  let rest = path;
  let at: Schema | undefined = s;
  while (rest.length) {
    let name: string;
    const dot = /^\.([A-Za-z_][A-Za-z0-9_-]*)/.exec(rest);
    const bracket = /^\['((?:[^'\\]|\\.)*)'\]/.exec(rest);
    if (dot) {
      name = dot[1];
      rest = rest.slice(dot[0].length);
    } else if (bracket) {
      name = bracket[1].replace(/\\(.)/g, '$1');
      rest = rest.slice(bracket[0].length);
    } else {
      return { steps, error: `fieldPath ${JSON.stringify(path)} is not a path of .name and ['key'] steps` };
    }
    if (at?.properties && Object.hasOwn(at.properties, name)) {
      steps.push({ property: name });
      at = at.properties[name];
    } else if (at && typeof at.additionalProperties === 'object') {
      steps.push({ key: name });
      at = at.additionalProperties;
    } else {
      return { steps, error: `fieldPath ${JSON.stringify(path)} names no field of the schema (${JSON.stringify(name)})` };
    }
  }
  return { steps, error: null };
}

function compileRule(spec: RuleSpec, s: Schema): CompiledRule {
  const fp = spec.fieldPath ? parseFieldPath(spec.fieldPath, s) : { steps: [], error: null };
  return {
    spec,
    compiled: compile(spec.rule),
    messageExpression: spec.messageExpression ? compile(spec.messageExpression) : null,
    fieldPathError: fp.error,
    fieldPath: fp.steps,
    reasonPrefix: spec.reason && Object.hasOwn(REASONS, spec.reason) ? REASONS[spec.reason] : '',
  };
}

const typedSchemas = new WeakMap<Schema, boolean>();

function fullyTyped(s: Schema): boolean {
  let t = typedSchemas.get(s);
  if (t !== undefined) return t;
  t = s.type !== undefined && s['x-kubernetes-preserve-unknown-fields'] !== true && s.additionalProperties !== true
    && !(s as { 'x-kubernetes-int-or-string'?: boolean })['x-kubernetes-int-or-string']
    && Object.values(s.properties ?? {}).every(fullyTyped)
    && (s.items === undefined || fullyTyped(s.items))
    && (typeof s.additionalProperties !== 'object' || fullyTyped(s.additionalProperties));
  typedSchemas.set(s, t);
  return t;
}

const nodes = new WeakMap<Schema, Node>();

/** The compiled rules of `s` and below, compiled on first use and kept with the schema. */
export function compiledRules(s: Schema): Node {
  let n = nodes.get(s);
  if (n) return n;
  const rules = (s['x-kubernetes-validations'] ?? []).map((r) => compileRule(r as RuleSpec, s));
  let properties: Map<string, Node> | null = null;
  for (const [key, child] of Object.entries(s.properties ?? {})) {
    const c = compiledRules(child);
    if (!c.any) continue;
    properties ??= new Map();
    properties.set(key, c);
  }
  const additional = typeof s.additionalProperties === 'object' ? compiledRules(s.additionalProperties) : null;
  const items = s.items ? compiledRules(s.items) : null;
  n = {
    kept: new Map(),
    typed: fullyTyped(s),
    rules,
    any: rules.length > 0 || properties !== null || (additional?.any ?? false) || (items?.any ?? false),
    properties,
    additional: additional?.any ? additional : null,
    items: items?.any ? items : null,
  };
  nodes.set(s, n);
  return n;
}

/** Every compiled rule text of a schema that does not compile, with why: for tests and audits. */
export function uncompilableRules(s: Schema): { rule: string; error: string }[] {
  const out: { rule: string; error: string }[] = [];
  const walk = (n: Node) => {
    for (const r of n.rules) {
      if (!r.compiled.ok) out.push({ rule: r.spec.rule, error: r.compiled.error });
      if (r.messageExpression && !r.messageExpression.ok) out.push({ rule: r.spec.messageExpression!, error: r.messageExpression.error });
      if (r.fieldPathError) out.push({ rule: r.spec.rule, error: r.fieldPathError });
    }
    for (const c of n.properties?.values() ?? []) walk(c);
    if (n.additional) walk(n.additional);
    if (n.items) walk(n.items);
  };
  walk(compiledRules(s));
  return out;
}

interface Run {
  errors: FieldError[];
  memo: WeakMap<object, CelInput>;
  limits: CostLimits;
  /** What is left of the object's cost budget. */
  budget: number;
  /** The cost of the costliest rule evaluated (reset per kept subtree, see walk). */
  costliest: number;
  /** Set once a rule ran out of cost: nothing more is evaluated. */
  stopped: boolean;
}

/** A rule that failed on a value: the message, and whether it is reported at the node itself rather than at the rule's fieldPath. */
interface Failure {
  rule: CompiledRule;
  reason: string;
  atNode: boolean;
}

function messageOf(r: CompiledRule): string {
  return r.spec.message || `failed rule: ${r.spec.rule}`;
}

/** The message a failed rule reports: its messageExpression's result when that is a usable one-line string. */
function failureMessage(r: CompiledRule, self: CelInput, run: Run): string {
  const me = r.messageExpression;
  if (me?.ok) {
    const m = metered(Math.max(0, Math.min(run.limits.perRule, run.budget)), () => me.program.run({ self }));
    run.budget -= m.used;
    const v = m.result;
    if (!m.exceeded && typeof v === 'string' && v.trim() !== '' && !/[\r\n]/.test(v)) {
      return v.length > MAX_MESSAGE_CHARS ? `${v.slice(0, MAX_MESSAGE_CHARS - 3)}...` : v;
    }
  }
  return messageOf(r);
}

/** Evaluates one rule on `self`: null when it holds (or is not run), else why not. */
function evaluate(r: CompiledRule, self: CelInput, run: Run): Failure | null {
  if (r.compiled.ok && r.compiled.program.readsOldSelf) return null;
  if (!r.compiled.ok || r.fieldPathError) {
    const why = r.compiled.ok ? r.fieldPathError : r.compiled.error;
    return { rule: r, reason: `the CRD's rule for this field cannot be run (${why}): ${messageOf(r)}`, atNode: true };
  }
  const program = r.compiled.program;
  const limit = Math.max(0, Math.min(run.limits.perRule, run.budget));
  const m = metered(limit, () => program.run({ self }));
  run.budget -= m.used;
  if (m.used > run.costliest) run.costliest = m.used;
  if (m.exceeded) {
    run.stopped = true;
    const which = limit < run.limits.perRule
      ? `the object's rules went over their cost budget (${run.limits.perObject} units)`
      : `the rule went over its cost limit (${run.limits.perRule} units)`;
    return { rule: r, reason: `${COST_EXCEEDED}: ${which}; no further validation rules are run: ${messageOf(r)}`, atNode: true };
  }
  const result = m.result;
  if (result === true) return null;
  const error = evaluationError(result);
  if (error !== null) return { rule: r, reason: `${r.reasonPrefix}${error} evaluating rule: ${messageOf(r)}`, atNode: false };
  if (result === false) return { rule: r, reason: `${r.reasonPrefix}${failureMessage(r, self, run)}`, atNode: false };
  return { rule: r, reason: `${r.reasonPrefix}rule did not evaluate to a boolean: ${messageOf(r)}`, atNode: false };
}

function report(f: Failure, at: string, run: Run): void {
  const field = f.atNode ? at : f.rule.fieldPath.reduce((p, step) => ('property' in step ? fieldPath(p, step.property) : keyPath(p, step.key)), at);
  run.errors.push({ field, reason: f.reason });
}

// ---------------------------------------------------------------- results kept

/**
 * What a node's rules and the rules below it found, by the node's value.
 * Rules without `oldSelf` are functions of `self` alone, and routes
 * written from templates repeat their values: the same `path: {type:
 * PathPrefix, value: /}`, the same backendRefs, often whole rules or rule
 * lists, across thousands of routes; a value seen before costs its JSON
 * and a lookup, its subtree is not walked again. Each node keeps its own
 * (Node.kept), by the value's JSON. Bounded: values whose JSON passes
 * MAX_KEPT_KEY_CHARS are not kept, and once MAX_KEPT_RESULTS are kept over
 * all nodes, all are dropped and keeping starts over (at most about 4 MiB
 * of keys).
 */
const MAX_KEPT_RESULTS = 2048;
const MAX_KEPT_KEY_CHARS = 2048;
let keptCount = 0;
const nodesKeeping = new Set<Node>();

interface Kept {
  /** The errors of the subtree, their fields relative to the node's path. */
  errors: { rel: string; reason: string }[];
  /** The cost they took, charged again to the object that reuses them. */
  cost: number;
  /** The cost of the costliest rule among them: reused only under a per-rule limit at least that high. */
  costliest: number;
}

function keep(n: Node, key: string, k: Kept): void {
  if (keptCount >= MAX_KEPT_RESULTS) {
    for (const x of nodesKeeping) x.kept.clear();
    nodesKeeping.clear();
    keptCount = 0;
  }
  n.kept.set(key, k);
  nodesKeeping.add(n);
  keptCount++;
}

/**
 * The key of a JSON value: JSON, but with numbers as String() writes them
 * (Infinity and NaN stay apart from null), built only up to `limit`
 * characters (null past it, so that a large value costs no more than the
 * limit to turn down).
 */
export function valueKey(v: unknown, limit: number): string | null {
  let out = '';
  const add = (x: unknown): boolean => {
    if (out.length > limit) return false;
    if (x === null) out += 'null';
    else if (typeof x === 'string') out += JSON.stringify(x);
    else if (typeof x === 'number') out += String(x);
    else if (typeof x === 'boolean') out += x ? 'true' : 'false';
    else if (Array.isArray(x)) {
      out += '[';
      for (let i = 0; i < x.length; i++) {
        if (i) out += ',';
        if (!add(x[i])) return false;
      }
      out += ']';
    } else if (typeof x === 'object') {
      out += '{';
      let first = true;
      for (const k of Object.keys(x)) {
        const y = (x as Obj)[k];
        if (y === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(k)}:`;
        first = false;
        if (!add(y)) return false;
      }
      out += '}';
    } else {
      out += 'undefined';
    }
    return out.length <= limit;
  };
  return add(v) ? out : null;
}

/** Runs the rules of node `n` and below on `v`, found at `at`; from what was kept when `v` was seen before. */
function walk(v: unknown, n: Node, s: Schema, at: string, run: Run): void {
  if (v === undefined || v === null || run.stopped) return;
  let key: string | null = null;
  if (n.rules.length) {
    const json = n.typed ? JSON.stringify(v) : valueKey(v, MAX_KEPT_KEY_CHARS);
    key = json !== null && json.length <= MAX_KEPT_KEY_CHARS ? json : null;
    const hit = key === null ? undefined : n.kept.get(key);
    if (hit && hit.cost <= run.budget && hit.costliest <= run.limits.perRule) {
      run.budget -= hit.cost;
      if (hit.costliest > run.costliest) run.costliest = hit.costliest;
      for (const e of hit.errors) run.errors.push({ field: at + e.rel, reason: e.reason });
      return;
    }
  }
  const errorsBefore = run.errors.length;
  const budgetBefore = run.budget;
  const costliestBefore = run.costliest;
  run.costliest = 0;
  if (n.rules.length) {
    const self = toCel(v, s, run.memo);
    for (const r of n.rules) {
      const f = evaluate(r, self, run);
      if (f) report(f, at, run);
      if (run.stopped) return;
    }
  }
  if (Array.isArray(v)) {
    if (n.items && s.items) for (let i = 0; i < v.length; i++) walk(v[i], n.items, s.items, indexPath(at, i), run);
  } else if (isObj(v)) {
    for (const k of Object.keys(v)) {
      const child = n.properties?.get(k);
      if (child && s.properties) walk(v[k], child, s.properties[k], fieldPath(at, k), run);
      else if (n.additional && typeof s.additionalProperties === 'object' && !(s.properties && Object.hasOwn(s.properties, k))) {
        walk(v[k], n.additional, s.additionalProperties, keyPath(at, k), run);
      }
    }
  }
  if (key !== null && !run.stopped) {
    const errors = run.errors.slice(errorsBefore).map((e) => ({ rel: e.field.slice(at.length), reason: e.reason }));
    keep(n, key, { errors, cost: budgetBefore - run.budget, costliest: run.costliest });
  }
  run.costliest = Math.max(run.costliest, costliestBefore);
}

/**
 * Runs every rule of schema `s` (the root of a CRD version) on `o`, which
 * has been pruned, defaulted and found structurally valid.
 * `skip` names root fields not to look into (metadata, validated by hand);
 * `limits` are the cost limits (cost.ts).
 */
export function runRules(o: Obj, s: Schema, skip?: ReadonlySet<string>, limits: CostLimits = DEFAULT_COST_LIMITS): FieldError[] {
  const n = compiledRules(s);
  if (!n.any) return [];
  const run: Run = { errors: [], memo: new WeakMap(), limits, budget: limits.perObject, costliest: 0, stopped: false };
  if (n.rules.length) {
    // Not kept: the root's value is the whole object, its metadata too.
    const self = rootToCel(o, s, run.memo);
    for (const r of n.rules) {
      const f = evaluate(r, self, run);
      if (f) report(f, '', run);
      if (run.stopped) return run.errors;
    }
  }
  for (const key of Object.keys(o)) {
    if (skip?.has(key)) continue;
    const child = n.properties?.get(key);
    if (child && s.properties) walk(o[key], child, s.properties[key], key, run);
  }
  return run.errors;
}
