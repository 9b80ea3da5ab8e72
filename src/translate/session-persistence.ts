// HTTPRoute rule `sessionPersistence` (GEP-1619, experimental channel)
// into the IR. The API layer (src/api/compat.ts) has already read the
// v1.4-v1.6 spellings (sessionName, cookieConfig) as the newer ones
// (cookie.name, cookie.lifetimeType, header.name), so only those are read
// here; `idleTimeout`, which v1.4 and v1.5 had and later versions dropped,
// is still honoured when written.
import { createHash } from 'node:crypto';
import { parseDuration } from '../api/durations.ts';
import type { SessionPersistence } from '../ir/types.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An HTTP token, as the CRD's pattern for cookie and header names has it. */
const TOKEN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$/;
/** A cookie Path attribute: printable ASCII without `;` (RFC 6265 §4.1.1 av-octet). */
const COOKIE_PATH = /^\/[\x21-\x3a\x3c-\x7e]{0,1023}$/;

/**
 * Why the rule's sessionPersistence cannot be programmed, or null. The
 * message names the field under `sessionPersistence` and the reason.
 */
export function sessionPersistenceProblem(sp: unknown): string | null {
  if (sp === undefined || sp === null) return null;
  if (!isObj(sp)) return 'sessionPersistence must be an object';
  const type = sp.type ?? 'Cookie';
  if (type !== 'Cookie' && type !== 'Header') return `sessionPersistence.type ${JSON.stringify(type)} is not supported (Cookie or Header)`;
  for (const field of ['absoluteTimeout', 'idleTimeout'] as const) {
    const v = sp[field];
    if (v === undefined) continue;
    if (typeof v !== 'string' || parseDuration(v) === null) return `sessionPersistence.${field} ${JSON.stringify(v)} is not a valid duration`;
  }
  if (type === 'Cookie') {
    const cookie = sp.cookie ?? {};
    if (!isObj(cookie)) return 'sessionPersistence.cookie must be an object';
    if (cookie.name !== undefined && (typeof cookie.name !== 'string' || !TOKEN.test(cookie.name))) {
      return `sessionPersistence.cookie.name ${JSON.stringify(cookie.name)} is not a valid cookie name (an HTTP token of 1 to 256 characters)`;
    }
    if (cookie.path !== undefined && (typeof cookie.path !== 'string' || !COOKIE_PATH.test(cookie.path))) {
      return `sessionPersistence.cookie.path ${JSON.stringify(cookie.path)} is not a valid cookie path (starts with /, printable, no ;)`;
    }
    const lifetime = cookie.lifetimeType ?? 'Session';
    if (lifetime !== 'Session' && lifetime !== 'Permanent') return `sessionPersistence.cookie.lifetimeType ${JSON.stringify(lifetime)} is not supported (Session or Permanent)`;
    if (lifetime === 'Permanent') {
      const abs = typeof sp.absoluteTimeout === 'string' ? parseDuration(sp.absoluteTimeout) : null;
      if (abs === null || abs < 1000) return 'sessionPersistence.absoluteTimeout of at least 1s is required when cookie.lifetimeType is Permanent (it is the cookie\'s Max-Age)';
    }
    if (sp.header !== undefined) return 'sessionPersistence.header must not be set when type is Cookie';
  } else {
    const header = sp.header;
    if (!isObj(header) || typeof header.name !== 'string' || !TOKEN.test(header.name)) {
      return `sessionPersistence.header.name ${JSON.stringify(isObj(header) ? header.name : undefined)} is not a valid header name (an HTTP token of 1 to 256 characters)`;
    }
    if (sp.cookie !== undefined) return 'sessionPersistence.cookie must not be set when type is Header';
  }
  return null;
}

/**
 * The IR of a rule's sessionPersistence that sessionPersistenceProblem
 * passed; `scope` is `namespace/route/rule`. A cookie without a name gets
 * one derived from the scope, so it is unique per rule and stable across
 * reloads (the spec asks for a generated unique name).
 */
export function toSessionPersistence(sp: unknown, scope: string): SessionPersistence | undefined {
  if (!isObj(sp)) return undefined;
  const out: SessionPersistence = { type: sp.type === 'Header' ? 'Header' : 'Cookie', name: '', scope };
  const abs = typeof sp.absoluteTimeout === 'string' ? parseDuration(sp.absoluteTimeout) : null;
  const idle = typeof sp.idleTimeout === 'string' ? parseDuration(sp.idleTimeout) : null;
  // Zero disables, as for every Gateway API duration.
  if (abs) out.absoluteTimeoutMs = abs;
  if (idle) out.idleTimeoutMs = idle;
  if (out.type === 'Header') {
    out.name = (sp.header as Obj).name as string;
    return out;
  }
  const cookie = isObj(sp.cookie) ? sp.cookie : {};
  out.name = typeof cookie.name === 'string' ? cookie.name : generatedCookieName(scope);
  out.path = typeof cookie.path === 'string' ? cookie.path : '/';
  out.lifetime = cookie.lifetimeType === 'Permanent' ? 'Permanent' : 'Session';
  return out;
}

export function generatedCookieName(scope: string): string {
  return `gatehouse-session-${createHash('sha256').update(scope).digest('hex').slice(0, 12)}`;
}
