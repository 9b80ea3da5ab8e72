// Finds the first route, in precedence order, whose match holds, without
// testing every route: routes are indexed by exact path and by prefix, so a
// request only visits routes whose path already matches (plus the regex
// routes), and those candidate lists are merged by precedence position.

import { conditionsHold, type CompiledMatch, type RequestFacts } from './match.ts';

export interface Routable {
  readonly match: CompiledMatch;
}

/**
 * Positions of the routes indexed under one path, in increasing order. Most
 * paths have one route: that is held as the number itself, which costs no
 * allocation (a worker holds one index per virtual host, thousands of them).
 */
type Positions = number | number[];

const size = (p: Positions): number => (typeof p === 'number' ? 1 : p.length);
const at = (p: Positions, i: number): number => (typeof p === 'number' ? p : p[i]);

function add(index: Map<string, Positions>, path: string, position: number): void {
  const list = index.get(path);
  if (list === undefined) index.set(path, position);
  else if (typeof list === 'number') index.set(path, [list, position]);
  else list.push(position);
}

// find() never yields, so one set of scratch arrays serves every lookup.
const scratchLists: Positions[] = [];
const scratchHeads: number[] = [];

export class RouteTable<R extends Routable> {
  /** In precedence order; positions in the index lists point here. */
  readonly routes: readonly R[];
  /** Only when some route has such a path. */
  readonly #exact: Map<string, Positions> | null = null;
  readonly #prefix: Map<string, Positions> | null = null;
  readonly #regex: number[] | null = null;
  /** Lists are visited in increasing position, so each stays sorted. */
  constructor(routes: readonly R[]) {
    this.routes = routes;
    for (let position = 0; position < routes.length; position++) {
      const path = routes[position].match.path;
      if (path.kind === 'RegularExpression') (this.#regex ??= []).push(position);
      else if (path.kind === 'Exact') add((this.#exact ??= new Map()), path.value, position);
      else add((this.#prefix ??= new Map()), path.value, position);
    }
  }

  find(facts: RequestFacts): R | undefined {
    const path = facts.path;
    const lists = scratchLists;
    lists.length = 0;

    const exact = this.#exact?.get(path);
    if (exact !== undefined) lists.push(exact);
    if (this.#prefix !== null) this.#collectPrefixLists(this.#prefix, path, lists);
    if (this.#regex !== null) lists.push(this.#regex);

    if (lists.length === 1) return this.#firstIn(lists[0], facts);
    if (lists.length === 0) return undefined;
    return this.#firstInMerged(lists, facts);
  }

  /** Every segment prefix of `path`: `/`, `/a`, `/a/b` for `/a/b` or `/a/b/`. */
  #collectPrefixLists(prefix: Map<string, Positions>, path: string, lists: Positions[]): void {
    const root = prefix.get('/');
    if (root !== undefined) lists.push(root);
    // From 2: a slash at 1 (`//x`) would give `/` again.
    for (let slash = path.indexOf('/', 2); slash !== -1; slash = path.indexOf('/', slash + 1)) {
      const list = prefix.get(path.slice(0, slash));
      if (list !== undefined) lists.push(list);
    }
    if (path.length > 1 && path.charCodeAt(path.length - 1) !== 0x2f) {
      const list = prefix.get(path);
      if (list !== undefined) lists.push(list);
    }
  }

  #firstIn(list: Positions, facts: RequestFacts): R | undefined {
    const routes = this.routes;
    const n = size(list);
    for (let i = 0; i < n; i++) {
      const route = routes[at(list, i)];
      if (this.#holds(route, facts)) return route;
    }
    return undefined;
  }

  #firstInMerged(lists: Positions[], facts: RequestFacts): R | undefined {
    const heads = scratchHeads;
    heads.length = lists.length;
    heads.fill(0);
    const routes = this.routes;
    for (;;) {
      let best = -1;
      let bestPosition = Number.MAX_SAFE_INTEGER;
      for (let l = 0; l < lists.length; l++) {
        const list = lists[l];
        const head = heads[l];
        if (head < size(list) && at(list, head) < bestPosition) {
          bestPosition = at(list, head);
          best = l;
        }
      }
      if (best === -1) return undefined;
      heads[best]++;
      const route = routes[bestPosition];
      if (this.#holds(route, facts)) return route;
    }
  }

  #holds(route: R, facts: RequestFacts): boolean {
    const path = route.match.path;
    if (path.kind === 'RegularExpression' && !path.regex.test(facts.path)) return false;
    return conditionsHold(route.match, facts);
  }
}
