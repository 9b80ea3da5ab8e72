// The HTTPRoute CORS filter (GEP-1767) -> the IR's CORSFilter. The schema
// has checked the shapes (origin pattern, method enum, header names, a
// lone `*`); what is left is what a pattern cannot say, and the CRD's
// defaults where an object did not go through them.
import type { HTTPCORSFilter } from '../api/types.ts';
import type { CORSFilter } from '../ir/types.ts';

/** `Access-Control-Max-Age` when the filter gives none: the CRD's default. */
const DEFAULT_MAX_AGE_SECONDS = 5;

const ORIGIN = /^(https?):\/\/(\*|(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::(\d{1,5}))?$/;

/** Why the filter cannot be programmed, or null; `at` names the filter (`filters[0]`). */
export function corsProblem(cors: HTTPCORSFilter, at: string): string | null {
  for (const origin of cors.allowOrigins ?? []) {
    if (origin === '*') continue;
    const m = ORIGIN.exec(origin);
    if (m === null) return `${at}.cors.allowOrigins: ${JSON.stringify(origin)} is not an origin (scheme://host[:port], or *)`;
    if (m[3] !== undefined && !(Number(m[3]) >= 1 && Number(m[3]) <= 65535)) {
      return `${at}.cors.allowOrigins: ${JSON.stringify(origin)} has port ${m[3]}, outside 1-65535`;
    }
  }
  if (cors.maxAge !== undefined && !(Number.isInteger(cors.maxAge) && cors.maxAge >= 1)) {
    return `${at}.cors.maxAge ${String(cors.maxAge)} is not a whole number of seconds of at least 1`;
  }
  return null;
}

export function toCORSFilter(cors: HTTPCORSFilter): CORSFilter {
  return {
    type: 'CORS',
    allowOrigins: cors.allowOrigins ?? [],
    allowMethods: cors.allowMethods ?? [],
    allowHeaders: cors.allowHeaders ?? [],
    exposeHeaders: cors.exposeHeaders ?? [],
    maxAgeSeconds: cors.maxAge ?? DEFAULT_MAX_AGE_SECONDS,
    allowCredentials: cors.allowCredentials === true,
  };
}
