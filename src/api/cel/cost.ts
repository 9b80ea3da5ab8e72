// The cost meter: CEL has no loops of its own, but comprehensions (`all`,
// `exists`, `exists_one`, `filter`, `map`) over lists and maps, nested, and
// string functions over long strings can make one rule cost a lot. The API
// server bounds it with a cost per rule and a budget per object; so does
// this, in units of its own: one per comprehension step (program.ts
// threads a tick through every comprehension's loop condition) and one per
// character a string function looks at (library.ts). A rule over its limit
// stops at its next step with an error; the object is refused, never
// evaluated without bound.
//
// Evaluation is synchronous, so the meter of the rule being evaluated is
// module state, set around each evaluation by `metered`.

/** The function program.ts puts into comprehensions; `@` keeps it out of what a rule could call by name. */
export const COST_TICK = '@gatehouse.cost';

/**
 * Per rule evaluation. The costliest Gateway API rules cost about 5,000:
 * a nested `exists_one` over the 64 listeners a Gateway may have (4,160),
 * the key pattern over 16 infrastructure labels of up to 316 characters
 * (about 5,000); test/api/cel.test.ts checks they fit in a quarter of
 * these limits. A comprehension step costs 5 to 30
 * microseconds of CPU in @bufbuild/cel (more when nested and on a busy
 * machine), so this is four times the costliest rule and under a second.
 * (The API server's own limits, 1,000,000 per rule and 10,000,000 per
 * object, are in cel-go's finer and cheaper cost units.)
 */
export const PER_RULE_COST_LIMIT = 20_000;

/** Per object, over all its rules: five rules at their limit. */
export const PER_OBJECT_COST_BUDGET = 100_000;

/** The limits a validation runs under (tests give smaller ones). */
export interface CostLimits {
  perRule: number;
  perObject: number;
}

export const DEFAULT_COST_LIMITS: CostLimits = { perRule: PER_RULE_COST_LIMIT, perObject: PER_OBJECT_COST_BUDGET };

export const COST_EXCEEDED = 'operation cancelled: actual cost limit exceeded';

interface Meter {
  used: number;
  limit: number;
  exceeded: boolean;
}

let current: Meter | null = null;

/** Adds `units` to the rule being evaluated; throws (a CEL error, where the evaluator catches it) once over its limit. */
export function chargeCost(units: number): void {
  const m = current;
  if (m === null) return;
  m.used += units;
  if (m.used > m.limit) {
    m.exceeded = true;
    throw new Error(COST_EXCEEDED);
  }
}

/** Runs `fn` with a meter of `limit` units: its result, the units used, and whether the limit was hit (whatever `fn` returned then). */
export function metered<T>(limit: number, fn: () => T): { result: T; used: number; exceeded: boolean } {
  const outer = current;
  const m: Meter = { used: 0, limit, exceeded: false };
  current = m;
  try {
    const result = fn();
    return { result, used: m.used, exceeded: m.exceeded };
  } finally {
    current = outer;
  }
}
