// The shape of a parsed document: how deep it nests and how many values it
// holds, counted as the tree the rest of the control plane will walk. js-yaml
// returns a YAML alias as the very object its anchor names, so a parsed
// document is a graph: "billion laughs" is a few hundred bytes that reach a
// billion values, and an anchor that contains its own alias is a cycle.
// Both are measured here without recursion, and within the limits' cost.

export type ShapeProblem = 'depth' | 'values';

export interface Shape {
  /** The first limit the document breaks, if any. */
  problem: ShapeProblem | null;
  /** Whether a map or list appears more than once (YAML aliases). */
  shared: boolean;
}

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return typeof v === 'object' && v !== null;
}

/**
 * Walks `value` as a tree: every appearance of a shared part is walked
 * again. Stops at the first map or list deeper than `maxDepth` (the root
 * is level 1), or once it has counted more than `maxValues` values
 * (maps, lists and scalars), so it costs at most that many steps; a cycle
 * runs into the depth limit.
 */
export function measureShape(value: unknown, maxDepth: number, maxValues: number): Shape {
  if (!isContainer(value)) return { problem: null, shared: false };
  const seen = new Set<object>();
  let shared = false;
  let values = 1;
  const nodes: object[] = [value];
  const depths: number[] = [1];
  while (nodes.length > 0) {
    const node = nodes.pop()!;
    const depth = depths.pop()!;
    if (depth > maxDepth) return { problem: 'depth', shared };
    if (seen.has(node)) shared = true;
    else seen.add(node);
    const children = Array.isArray(node) ? node : Object.values(node);
    values += children.length;
    if (values > maxValues) return { problem: 'values', shared };
    for (const child of children) {
      if (isContainer(child)) {
        nodes.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return { problem: null, shared };
}

/**
 * A copy of `value` in which every appearance of a shared part is a part
 * of its own, as YAML means an alias: later stages default and prune
 * objects per field, and must not see a change to one place in another.
 * Only for a value measureShape() passed (no cycle, bounded size).
 */
export function expandShared<T>(value: T): T {
  if (!isContainer(value)) return value;
  const root = (Array.isArray(value) ? [] : {}) as Record<string, unknown>;
  const pending: [Record<string, unknown>, Record<string, unknown>][] = [[value as Record<string, unknown>, root]];
  while (pending.length > 0) {
    const [from, to] = pending.pop()!;
    for (const key of Object.keys(from)) {
      let v = from[key];
      if (isContainer(v)) {
        const copy = (Array.isArray(v) ? [] : {}) as Record<string, unknown>;
        pending.push([v as Record<string, unknown>, copy]);
        v = copy;
      }
      // An own `__proto__` key is data; plain assignment would set the prototype.
      if (key === '__proto__') Object.defineProperty(to, key, { value: v, writable: true, enumerable: true, configurable: true });
      else to[key] = v;
    }
  }
  return root as T;
}
