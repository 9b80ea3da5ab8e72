// Pages of /api/v1/resources, as the Kubernetes API pages lists: `?limit=N`
// asks for at most N items, and an answer with more to come carries
// `metadata.continue`, a token to pass back as `?continue=` for the next
// page. Items come in a stable order (kind, namespace, name) and the token
// names the last item given, so a reload between two pages neither repeats
// nor skips an object that exists throughout.

export const DEFAULT_PAGE_LIMIT = 500;
export const MAX_PAGE_LIMIT = 5000;

export interface PageRequest {
  limit: number;
  /** The key of the last item of the previous page; null for the first page. */
  after: string | null;
  kind: string | null;
  namespace: string | null;
  name: string | null;
}

export interface Page {
  items: unknown[];
  /** Present when more items match after these. */
  continueToken?: string;
}

/** The page asked for by the query, or why the query is wrong. */
export function parsePageRequest(query: URLSearchParams): PageRequest | { error: string } {
  let limit = DEFAULT_PAGE_LIMIT;
  const rawLimit = query.get('limit');
  if (rawLimit !== null) {
    if (!/^\d{1,9}$/.test(rawLimit) || Number(rawLimit) === 0) return { error: `limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}, not ${JSON.stringify(rawLimit)}` };
    // Larger asks get the largest page, as the Kubernetes API may give fewer items than asked.
    limit = Math.min(Number(rawLimit), MAX_PAGE_LIMIT);
  }
  let after: string | null = null;
  const token = query.get('continue');
  if (token !== null && token !== '') {
    after = decodeContinue(token);
    if (after === null) return { error: 'invalid continue token: pass back metadata.continue as it was given' };
  }
  return { limit, after, kind: query.get('kind'), namespace: query.get('namespace'), name: query.get('name') };
}

const TOKEN_PREFIX = 'v1\0';

function encodeContinue(key: string): string {
  return Buffer.from(TOKEN_PREFIX + key, 'utf8').toString('base64url');
}

function decodeContinue(token: string): string | null {
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(token)) return null;
  const text = Buffer.from(token, 'base64url').toString('utf8');
  return text.startsWith(TOKEN_PREFIX) ? text.slice(TOKEN_PREFIX.length) : null;
}

interface SortedItems {
  items: unknown[];
  keys: string[];
}

/**
 * Sorted views, one per list the store handed out: the store gives a new
 * array on every reload and the same one until then, so a list is sorted
 * once, by the first page asked of it.
 */
const sortedViews = new WeakMap<readonly unknown[], SortedItems>();

function sortedView(all: readonly unknown[]): SortedItems {
  let view = sortedViews.get(all);
  if (view === undefined) {
    const keyed = all.map((item) => ({ item, key: itemKey(item) }));
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    view = { items: keyed.map((e) => e.item), keys: keyed.map((e) => e.key) };
    sortedViews.set(all, view);
  }
  return view;
}

/** `kind NUL namespace NUL name`: NUL sorts before every character a name may hold. */
function itemKey(item: unknown): string {
  return `${text(field(item, 'kind'))}\0${text(field(item, 'metadata', 'namespace'))}\0${text(field(item, 'metadata', 'name'))}`;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

export function field(o: unknown, ...keys: string[]): unknown {
  let v: unknown = o;
  for (const k of keys) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** The items of `all` that match the request's filters, from after its token, at most its limit. */
export function pageOf(all: readonly unknown[], req: PageRequest): Page {
  const { items, keys } = sortedView(all);
  let i = req.after === null ? 0 : firstAfter(keys, req.after);
  const page: unknown[] = [];
  let last = -1;
  for (; i < items.length; i++) {
    if (!matches(items[i], req)) continue;
    // One more match than the page holds: there is a next page.
    if (page.length === req.limit) return { items: page, continueToken: encodeContinue(keys[last]) };
    page.push(items[i]);
    last = i;
  }
  return { items: page };
}

function matches(item: unknown, req: PageRequest): boolean {
  return (req.kind === null || field(item, 'kind') === req.kind)
    && (req.namespace === null || field(item, 'metadata', 'namespace') === req.namespace)
    && (req.name === null || field(item, 'metadata', 'name') === req.name);
}

/** The first index whose key sorts after `key` (binary search). */
function firstAfter(keys: string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
