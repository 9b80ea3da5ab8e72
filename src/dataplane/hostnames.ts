// Hostname patterns as the IR states them: exact names, `*.suffix`
// wildcards (one or more labels before the suffix, never the bare suffix),
// and "any" (`null` for Gateway listeners, `*` for virtual hosts).

/** A lower-cased pattern without a trailing dot; `null` matches any host. */
export type HostPattern = string | null;

export function normalizePattern(pattern: string | null): HostPattern {
  if (pattern === null || pattern === '*') return null;
  return stripTrailingDot(pattern.toLowerCase());
}

/**
 * The host a request is for, from a Host header or an authority:
 * port removed, lower-cased, trailing dot removed. IPv6 literals keep their
 * brackets so they can be put back into a URL as they are.
 */
export function hostFromAuthority(authority: string): string {
  let end = authority.length;
  if (authority.charCodeAt(0) === 0x5b /* [ */) {
    const close = authority.indexOf(']');
    if (close !== -1) end = close + 1;
  } else {
    const colon = authority.indexOf(':');
    if (colon !== -1) end = colon;
  }
  const host = end === authority.length ? authority : authority.slice(0, end);
  return stripTrailingDot(host.toLowerCase());
}

function stripTrailingDot(host: string): string {
  return host.length > 1 && host.charCodeAt(host.length - 1) === 0x2e ? host.slice(0, -1) : host;
}

/**
 * Ordered host patterns where the first entry (in the given order) that
 * matches wins, looked up without scanning every pattern: exact names in a
 * map, wildcards in a map keyed by `.suffix` probed once per label of the
 * host, and the position of the first catch-all.
 */
export class HostTable<T> {
  readonly #values: T[] = [];
  readonly #exact = new Map<string, number>();
  readonly #wildcards = new Map<string, number>();
  #any = -1;

  constructor(entries: Iterable<{ pattern: HostPattern; value: T }>) {
    for (const { pattern, value } of entries) {
      const index = this.#values.push(value) - 1;
      if (pattern === null) {
        if (this.#any === -1) this.#any = index;
      } else if (pattern.startsWith('*.')) {
        const suffix = pattern.slice(1);
        if (!this.#wildcards.has(suffix)) this.#wildcards.set(suffix, index);
      } else if (!this.#exact.has(pattern)) {
        this.#exact.set(pattern, index);
      }
    }
  }

  get size(): number {
    return this.#values.length;
  }

  /** `host` must already be normalised (see hostFromAuthority). */
  match(host: string): T | undefined {
    let best = this.#any === -1 ? Number.MAX_SAFE_INTEGER : this.#any;
    const exact = this.#exact.get(host);
    if (exact !== undefined && exact < best) best = exact;
    if (this.#wildcards.size !== 0) {
      // Starting at 1 keeps at least one character before the suffix.
      for (let dot = host.indexOf('.', 1); dot !== -1; dot = host.indexOf('.', dot + 1)) {
        const index = this.#wildcards.get(host.slice(dot));
        if (index !== undefined && index < best) best = index;
      }
    }
    return best === Number.MAX_SAFE_INTEGER ? undefined : this.#values[best];
  }
}
