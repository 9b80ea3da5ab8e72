// One CEL expression compiled: parsed, checked for functions the
// environment lacks, threaded with the cost meter, planned. Compiled once
// per distinct text and kept: the CRDs hold a fixed set of rules (about
// 350, 90 distinct), so a reload of 5,000 routes compiles nothing.
import { celEnv, parse, plan, isCelError } from '@bufbuild/cel';
import type { CelEnv, CelInput, CelResult } from '@bufbuild/cel';
import { KUBERNETES_FUNCTIONS } from './library.ts';
import { COST_TICK } from './cost.ts';

type ParsedExpr = ReturnType<typeof parse>;
type Expr = ParsedExpr['expr'];

export interface Program {
  /** Evaluates with `self` (and `oldSelf`, for a transition rule) bound. */
  run(bindings: Record<string, CelInput>): CelResult;
  /** Whether the expression reads `oldSelf`: a transition rule. */
  readsOldSelf: boolean;
}

export type Compiled = { ok: true; program: Program } | { ok: false; error: string };

let env: CelEnv | null = null;

/** The environment every rule runs in: standard CEL and the Kubernetes functions of library.ts. */
export function celEnvironment(): CelEnv {
  env ??= celEnv({ funcs: KUBERNETES_FUNCTIONS });
  return env;
}

/** Calls the planner resolves itself, not through the function table. */
const BUILT_IN_CALLS = new Set(['_[_]', '_[?_]', '_?._', '_?_:_', '_&&_', '_||_', '@not_strictly_false', '__not_strictly_false__']);

/** `a.b.c` as a dotted name when `e` is only identifiers and selections, else undefined. */
function qualifiedName(e: Expr | undefined): string | undefined {
  if (!e) return undefined;
  if (e.exprKind.case === 'identExpr') return e.exprKind.value.name;
  if (e.exprKind.case === 'selectExpr' && !e.exprKind.value.testOnly) {
    const operand = qualifiedName(e.exprKind.value.operand);
    return operand === undefined ? undefined : `${operand}.${e.exprKind.value.field}`;
  }
  return undefined;
}

interface Walk {
  unknown: Set<string>;
  readsOldSelf: boolean;
}

/**
 * Walks the expression: records functions the environment does not have
 * and whether `oldSelf` is read, and wraps each comprehension's loop
 * condition in the cost tick, so that every step of every comprehension
 * is metered (the planner evaluates the condition once per step).
 */
function instrument(e: Expr | undefined, w: Walk, funcs: CelEnv['funcs']): void {
  if (!e) return;
  const k = e.exprKind;
  switch (k.case) {
    case 'identExpr':
      if (k.value.name === 'oldSelf') w.readsOldSelf = true;
      return;
    case 'selectExpr':
      instrument(k.value.operand, w, funcs);
      return;
    case 'callExpr': {
      const call = k.value;
      const qualified = call.target ? qualifiedName(call.target) : undefined;
      const asQualified = qualified !== undefined && funcs.find(`${qualified}.${call.function}`) !== undefined;
      if (!asQualified) {
        if (!BUILT_IN_CALLS.has(call.function) && funcs.find(call.function) === undefined) w.unknown.add(call.function);
        instrument(call.target, w, funcs);
      }
      for (const a of call.args) instrument(a, w, funcs);
      return;
    }
    case 'listExpr':
      for (const x of k.value.elements) instrument(x, w, funcs);
      return;
    case 'structExpr':
      for (const entry of k.value.entries) {
        if (entry.keyKind.case === 'mapKey') instrument(entry.keyKind.value, w, funcs);
        instrument(entry.value, w, funcs);
      }
      return;
    case 'comprehensionExpr': {
      const c = k.value;
      instrument(c.iterRange, w, funcs);
      instrument(c.accuInit, w, funcs);
      instrument(c.loopCondition, w, funcs);
      instrument(c.loopStep, w, funcs);
      instrument(c.result, w, funcs);
      if (c.loopCondition) c.loopCondition = tick(c.loopCondition);
      return;
    }
    default:
      return;
  }
}

/** `@gatehouse.cost(cond)`: the condition, after one unit is charged. */
function tick(cond: Expr): Expr {
  return {
    ...cond,
    exprKind: { case: 'callExpr', value: { ...({} as { $typeName: 'cel.expr.Expr.Call' }), function: COST_TICK, args: [cond], target: undefined } },
  } as Expr;
}

const cache = new Map<string, Compiled>();

/**
 * Compiles `text` (a rule or a messageExpression), or says why it does
 * not compile. Cached by text: the same rule on many schema nodes (the
 * filter rules repeat for rule filters and backendRef filters, in every
 * version) is compiled once.
 */
export function compile(text: string): Compiled {
  let c = cache.get(text);
  if (c === undefined) {
    c = compileUncached(text);
    cache.set(text, c);
  }
  return c;
}

function compileUncached(text: string): Compiled {
  const environment = celEnvironment();
  let parsed: ParsedExpr;
  try {
    parsed = parse(text);
  } catch (e) {
    return { ok: false, error: `does not parse: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
  }
  const w: Walk = { unknown: new Set(), readsOldSelf: false };
  instrument(parsed.expr, w, environment.funcs);
  if (w.unknown.size) return { ok: false, error: `calls ${[...w.unknown].map((f) => `${f}()`).join(', ')}, which Gatehouse's CEL library does not define` };
  let run: (bindings: Record<string, CelInput>) => CelResult;
  try {
    const planned = plan(environment, parsed) as (ctx?: Record<string, CelInput>) => CelResult;
    run = (bindings) => planned(bindings);
  } catch (e) {
    return { ok: false, error: `cannot be planned: ${e instanceof Error ? e.message : String(e)}` };
  }
  return { ok: true, program: { run, readsOldSelf: w.readsOldSelf } };
}

/** The message of an evaluation error, worded as the API server words its own. */
export function evaluationError(r: unknown): string | null {
  if (!isCelError(r)) return null;
  return r.message.replace(/^field not found: /, 'no such key: ');
}
