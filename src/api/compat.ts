// Objects written for the Gateway API bundles clusters run (v1.4 and later)
// that the vendored CRDs (src/api/crds, upstream main after v1.6) spell
// differently. Each older spelling is read as the newer one, with a
// warning naming the newer field; the object is accepted, never refused
// for it. Found by comparing the experimental HTTPRoute, GRPCRoute,
// Gateway and ListenerSet CRDs of v1.4.1, v1.5.x, v1.6.x and v1.7.0 with
// the vendored ones: only `sessionPersistence` of HTTPRoute and GRPCRoute
// rules changed shape (GEP-1619):
//
//   v1.4-v1.6                      vendored (and v1.7.0)
//   sessionName                    cookie.name, or header.name for type Header
//   cookieConfig.lifetimeType      cookie.lifetimeType
//   idleTimeout (v1.4, v1.5)       no counterpart: kept as written (schema.ts
//                                  adds it back to the schema), warned about
//   type Cookie, no cookie         cookie required: read as `cookie: {}`
//   type Header, no name           header.name required: read as DEFAULT_SESSION_HEADER
//
// One kind was renamed: XListenerSet (gateway.networking.x-k8s.io/v1alpha1,
// v1.4 only) became ListenerSet (gateway.networking.k8s.io/v1) in v1.5.0.
// An XListenerSet is validated against its own v1.4.1 CRD (vendored beside
// the others), translated as a ListenerSet, warned about here, and keeps
// its own kind, so its status is written back where it was read.
//
// v1.7.0 fields the vendored CRDs lack (Gateway `addresses[].routability`,
// `listeners[].filters`) are not renames: they are pruned like any unknown
// field, which validate.ts warns about.
import type { FieldError } from './errors.ts';
import { fieldPath, indexPath, showValue } from './errors.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The header name for a Header-type session persistence written without one (the API before v1.7 let the implementation choose). */
export const DEFAULT_SESSION_HEADER = 'Gatehouse-Session';

/** A cookie or header name: an HTTP token, as the vendored CRD's pattern has it. */
const TOKEN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const MAX_NAME = 256;

const OLD = 'the Gateway API v1.4 to v1.6 spelling';

/** Kinds read under their older name, by the versions that had it. */
const RENAMED_KINDS: Record<string, { versions: readonly string[]; reason: string }> = {
  XListenerSet: {
    versions: ['v1alpha1'],
    reason: 'XListenerSet (gateway.networking.x-k8s.io/v1alpha1) is the Gateway API v1.4 name of ListenerSet: read as a ListenerSet, status written on the XListenerSet; write apiVersion gateway.networking.k8s.io/v1, kind ListenerSet instead',
  },
};

/** Kinds, and their versions, whose rules carry `sessionPersistence`. */
const SESSION_PERSISTENCE: Record<string, readonly string[]> = {
  HTTPRoute: ['v1', 'v1beta1'],
  GRPCRoute: ['v1'],
};

/**
 * Rewrites, in place, the older spellings in `o` (a copy of the raw
 * object, before pruning) to the vendored API's, appending one warning per
 * rewrite. Reads defensively: a value of the wrong type is left for the
 * schema to report.
 */
export function readOlderSpellings(o: Obj, kind: string, version: string, warnings: FieldError[]): void {
  const renamed = RENAMED_KINDS[kind];
  if (renamed !== undefined && renamed.versions.includes(version)) warnings.push({ field: 'kind', reason: renamed.reason });
  if (!SESSION_PERSISTENCE[kind]?.includes(version)) return;
  const spec = o.spec;
  if (!isObj(spec) || !Array.isArray(spec.rules)) return;
  spec.rules.forEach((rule, i) => {
    if (isObj(rule) && isObj(rule.sessionPersistence)) sessionPersistence(rule.sessionPersistence, fieldPath(indexPath('spec.rules', i), 'sessionPersistence'), warnings);
  });
}

function sessionPersistence(sp: Obj, at: string, warnings: FieldError[]): void {
  const type = sp.type === undefined || sp.type === null ? 'Cookie' : sp.type;
  if (type !== 'Cookie' && type !== 'Header') return;
  const own = type === 'Cookie' ? 'cookie' : 'header';
  const warn = (field: string, reason: string) => warnings.push({ field: fieldPath(at, field), reason });

  if (sp.cookieConfig !== undefined) {
    const config = sp.cookieConfig;
    delete sp.cookieConfig;
    if (type === 'Header') {
      warn('cookieConfig', `ignored: cookieConfig (${OLD} of cookie) applies to type Cookie only`);
    } else if (isObj(config)) {
      const cookie: Obj = isObj(sp.cookie) ? sp.cookie : {};
      const kept: string[] = [];
      for (const [k, v] of Object.entries(config)) {
        if (k === '__proto__') continue;
        if (cookie[k] === undefined) cookie[k] = v;
        else kept.push(k);
      }
      sp.cookie = cookie;
      warn('cookieConfig', `cookieConfig is ${OLD} of cookie: read as cookie${kept.length ? ` (cookie's own ${kept.join(', ')} kept)` : ''}; write cookie instead`);
    } else {
      warn('cookieConfig', `ignored: cookieConfig (${OLD} of cookie) must be an object`);
    }
  }

  if (sp.sessionName !== undefined) {
    const name = sp.sessionName;
    delete sp.sessionName;
    const target: Obj | undefined = isObj(sp[own]) ? sp[own] as Obj : undefined;
    if (target?.name !== undefined && target.name !== null) {
      warn('sessionName', `ignored: sessionName is ${OLD} of ${own}.name, which is set`);
    } else if (typeof name === 'string' && name.length <= MAX_NAME && TOKEN.test(name)) {
      sp[own] = { ...target, name };
      warn('sessionName', `sessionName is ${OLD} of ${own}.name: read as ${own}.name; write ${own}.name instead`);
    } else {
      warn('sessionName', `ignored: sessionName ${showValue(name)} is not a valid ${own} name for ${own}.name (an HTTP token of 1 to ${MAX_NAME} characters)`);
    }
  }

  if (sp.idleTimeout !== undefined) {
    warn('idleTimeout', 'idleTimeout is a Gateway API v1.4 and v1.5 field, removed in v1.6 with no counterpart: read as written');
  }

  if (type === 'Cookie' && (sp.cookie === undefined || sp.cookie === null)) {
    sp.cookie = {};
    warnings.push({ field: fieldPath(at, 'cookie'), reason: 'cookie is required for type Cookie since Gateway API v1.7: read as cookie: {} (a cookie of a generated name)' });
  }
  const header = sp.header;
  if (type === 'Header' && (header === undefined || header === null || (isObj(header) && (header.name === undefined || header.name === null)))) {
    sp.header = { ...(isObj(header) ? header : {}), name: DEFAULT_SESSION_HEADER };
    warnings.push({ field: fieldPath(at, 'header.name'), reason: `header.name is required for type Header since Gateway API v1.7: read as ${JSON.stringify(DEFAULT_SESSION_HEADER)}` });
  }
}
