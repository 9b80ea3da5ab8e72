// The x-kubernetes-validations (CEL) rules of the Gateway API CRDs, written
// by hand: the walker in schema.ts cannot run CEL. Each function names the
// CRD rule it stands for; the reasons follow the CRD messages, the fields
// point at the most precise path. Rules run on the pruned and defaulted
// object, as the API server runs them, and read it defensively: a value of
// the wrong type (already reported by the schema walker) counts as absent.
//
// Not implemented: transition rules (`oldSelf`: GatewayClass controllerName
// immutability), and Gateway spec.tls.frontend.perPort port uniqueness
// (the schema's list-map key check reports it already).
import { fieldPath, indexPath, keyPath } from './errors.ts';
import type { FieldError } from './errors.ts';
import { isIPv4, isIPv6, splitAPIVersion } from './schema.ts';
import { parseDuration } from './durations.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
/** The object items of a list with their indexes; anything else counts as empty. */
function items(v: unknown): [Obj, number][] {
  if (!Array.isArray(v)) return [];
  const out: [Obj, number][] = [];
  v.forEach((x, i) => { if (isObj(x)) out.push([x, i]); });
  return out;
}
function obj(v: unknown): Obj | undefined {
  return isObj(v) ? v : undefined;
}
function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
function has(o: Obj | undefined, k: string): boolean {
  return o !== undefined && o[k] !== undefined && o[k] !== null;
}
/** CEL `!has(x.f) || x.f == ''` (and 0 for numbers). */
function empty(o: Obj, k: string): boolean {
  return !has(o, k) || o[k] === '' || o[k] === 0;
}
function size(v: unknown): number {
  if (Array.isArray(v)) return v.length;
  if (isObj(v)) return Object.keys(v).length;
  if (typeof v === 'string') return v.length;
  return 0;
}

/** The CEL rules for one object (of a kind the CRDs know); [] for other kinds. */
export function checkRules(o: Obj): FieldError[] {
  const errors: FieldError[] = [];
  const spec = obj(o.spec);
  if (!spec) return errors;
  const kind = o.kind;
  const version = splitAPIVersion(str(o.apiVersion) ?? '').version;
  switch (kind) {
    case 'Gateway':
      listenerRules(spec, 'Gateway', true, errors);
      gatewayAddressRules(spec, errors);
      infrastructureRules(spec, errors);
      break;
    case 'ListenerSet':
      listenerRules(spec, 'ListenerSet', false, errors);
      break;
    case 'HTTPRoute':
      parentRefRules(spec, errors);
      ruleNameRules(spec, errors);
      totalMatchesRule(spec, errors);
      for (const [rule, i] of items(spec.rules)) httpRouteRuleRules(rule, `spec.rules[${i}]`, errors);
      break;
    case 'GRPCRoute':
      parentRefRules(spec, errors);
      ruleNameRules(spec, errors);
      totalMatchesRule(spec, errors);
      for (const [rule, i] of items(spec.rules)) grpcRouteRuleRules(rule, `spec.rules[${i}]`, errors);
      break;
    case 'TLSRoute':
      parentRefRules(spec, errors);
      ruleNameRules(spec, errors);
      if (version === 'v1') tlsRouteHostnameRules(spec, errors);
      backendRefPortRules(spec, errors);
      break;
    case 'TCPRoute':
    case 'UDPRoute':
      parentRefRules(spec, errors);
      ruleNameRules(spec, errors);
      backendRefPortRules(spec, errors);
      break;
    case 'BackendTLSPolicy':
      backendTLSPolicyRules(spec, errors);
      break;
  }
  return errors;
}

// ---------------------------------------------------------------- listeners

/**
 * Gateway and ListenerSet `spec.listeners`:
 * - Listener name must be unique within the Gateway
 * - Combination of port, protocol and hostname must be unique for each listener
 * - hostname must not be specified for protocols ['TCP', 'UDP']
 * - tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']
 * - tls mode must be Terminate for protocol HTTPS
 * - tls mode must be set for protocol TLS
 * - (listeners[].tls) certificateRefs or options must be specified when mode is Terminate
 *
 * Note: the CRD does not require tls for HTTPS listeners (only its doc
 * comment says so); an HTTPS listener without tls is admitted and left to
 * the controller to report.
 */
export function listenerRules(spec: Obj, owner: string, portRequired: boolean, errors: FieldError[]): void {
  const listeners = items(spec.listeners);
  const at = (i: number) => `spec.listeners[${i}]`;
  const firstByName = new Map<unknown, number>();
  for (const [l, i] of listeners) {
    const first = firstByName.get(l.name);
    if (first !== undefined) {
      errors.push({ field: `${at(i)}.name`, reason: `Listener name must be unique within the ${owner}: ${JSON.stringify(l.name)} is also the name of ${at(first)}` });
    } else {
      firstByName.set(l.name, i);
    }
  }
  for (const [l1, i] of listeners) {
    if (!portRequired && !has(l1, 'port')) continue;
    const same = listeners.find(([l2, j]) => j < i && (portRequired || has(l2, 'port')) && l1.port === l2.port && l1.protocol === l2.protocol
      && (has(l1, 'hostname') && has(l2, 'hostname') ? l1.hostname === l2.hostname : !has(l1, 'hostname') && !has(l2, 'hostname')));
    if (same) {
      errors.push({ field: at(i), reason: `Combination of port, protocol and hostname must be unique for each listener: same as ${at(same[1])}` });
    }
  }
  for (const [l, i] of listeners) {
    const protocol = l.protocol;
    if ((protocol === 'TCP' || protocol === 'UDP') && !empty(l, 'hostname')) {
      errors.push({ field: `${at(i)}.hostname`, reason: `hostname must not be specified for protocol ${protocol}` });
    }
    if ((protocol === 'HTTP' || protocol === 'TCP' || protocol === 'UDP') && has(l, 'tls')) {
      errors.push({ field: `${at(i)}.tls`, reason: `tls must not be specified for protocol ${protocol}` });
    }
    const tls = obj(l.tls);
    if (protocol === 'HTTPS' && tls && !(tls.mode === '' || tls.mode === 'Terminate' || tls.mode === undefined)) {
      errors.push({ field: `${at(i)}.tls.mode`, reason: 'tls mode must be Terminate for protocol HTTPS' });
    }
    if (protocol === 'TLS' && !(tls && has(tls, 'mode') && tls.mode !== '')) {
      errors.push({ field: `${at(i)}.tls`, reason: 'tls (with a mode) must be set for protocol TLS' });
    }
    if (tls && tls.mode === 'Terminate' && size(tls.certificateRefs) === 0 && size(tls.options) === 0) {
      errors.push({ field: `${at(i)}.tls.certificateRefs`, reason: 'certificateRefs or options must be specified when mode is Terminate' });
    }
  }
}

const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Gateway `spec.addresses`:
 * - IPAddress values must be unique
 * - Hostname values must be unique
 * - Hostname value must be empty or contain only valid characters
 */
export function gatewayAddressRules(spec: Obj, errors: FieldError[]): void {
  const seen = new Map<string, number>();
  for (const [a, i] of items(spec.addresses)) {
    const value = str(a.value);
    if (a.type === 'Hostname' && value !== undefined && !HOSTNAME.test(value)) {
      errors.push({ field: `spec.addresses[${i}].value`, reason: `Hostname value must be empty or contain only valid characters (matching ${HOSTNAME.source})` });
    }
    if ((a.type === 'IPAddress' || a.type === 'Hostname') && value !== undefined) {
      const key = `${a.type}\0${value}`;
      const first = seen.get(key);
      if (first !== undefined) errors.push({ field: `spec.addresses[${i}].value`, reason: `${a.type} values must be unique: ${JSON.stringify(value)} is also spec.addresses[${first}]` });
      else seen.set(key, i);
    }
  }
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;

/**
 * Gateway `spec.infrastructure.labels` and `.annotations`: keys in the form
 * of an optional DNS subdomain prefix (under 253 characters) followed by a
 * name segment of up to 63 characters.
 */
export function infrastructureRules(spec: Obj, errors: FieldError[]): void {
  const infra = obj(spec.infrastructure);
  if (!infra) return;
  for (const [field, word] of [['labels', 'Label'], ['annotations', 'Annotation']] as const) {
    const map = obj(infra[field]);
    if (!map) continue;
    for (const key of Object.keys(map)) {
      const at = keyPath(`spec.infrastructure.${field}`, key);
      if (!LABEL_KEY.test(key)) {
        errors.push({ field: at, reason: `${word} keys must be in the form of an optional DNS subdomain prefix followed by a required name segment of up to 63 characters` });
      } else if (key.split('/')[0].length >= 253) {
        errors.push({ field: at, reason: `the ${word.toLowerCase()} key's prefix must be a DNS subdomain not longer than 253 characters in total` });
      }
    }
  }
}

// ---------------------------------------------------------------- routes

/** CEL's "same parent": group, kind, name and namespace ('' and absent alike). */
function sameParent(p1: Obj, p2: Obj): boolean {
  return p1.group === p2.group && p1.kind === p2.kind && p1.name === p2.name
    && (empty(p1, 'namespace') && empty(p2, 'namespace') ? true : has(p1, 'namespace') && has(p2, 'namespace') && p1.namespace === p2.namespace);
}

function sameOptional(p1: Obj, p2: Obj, k: string): boolean {
  if (empty(p1, k) && empty(p2, k)) return true;
  return has(p1, k) && has(p2, k) && p1[k] === p2[k];
}

/**
 * Route `spec.parentRefs`:
 * - sectionName or port must be specified when parentRefs includes 2 or more references to the same parent
 * - sectionName or port must be unique when parentRefs includes 2 or more references to the same parent
 */
export function parentRefRules(spec: Obj, errors: FieldError[]): void {
  const refs = items(spec.parentRefs);
  for (const [p1, i] of refs) {
    for (const [p2, j] of refs) {
      if (j >= i || !sameParent(p1, p2)) continue;
      if (empty(p1, 'sectionName') !== empty(p2, 'sectionName') || empty(p1, 'port') !== empty(p2, 'port')) {
        errors.push({ field: `spec.parentRefs[${i}]`, reason: `sectionName or port must be specified when parentRefs includes 2 or more references to the same parent (see spec.parentRefs[${j}])` });
        break;
      }
      if (sameOptional(p1, p2, 'sectionName') && sameOptional(p1, p2, 'port')) {
        errors.push({ field: `spec.parentRefs[${i}]`, reason: `sectionName or port must be unique when parentRefs includes 2 or more references to the same parent (same as spec.parentRefs[${j}])` });
        break;
      }
    }
  }
}

/** Route `spec.rules`: Rule name must be unique within the route. */
export function ruleNameRules(spec: Obj, errors: FieldError[]): void {
  const seen = new Map<unknown, number>();
  for (const [r, i] of items(spec.rules)) {
    if (!has(r, 'name')) continue;
    const first = seen.get(r.name);
    if (first !== undefined) errors.push({ field: `spec.rules[${i}].name`, reason: `Rule name must be unique within the route: ${JSON.stringify(r.name)} is also the name of spec.rules[${first}]` });
    else seen.set(r.name, i);
  }
}

/** HTTPRoute and GRPCRoute `spec.rules`: at most 128 matches over (the first 16) rules. */
export function totalMatchesRule(spec: Obj, errors: FieldError[]): void {
  const rules = Array.isArray(spec.rules) ? spec.rules.slice(0, 16) : [];
  const total = rules.reduce((n: number, r) => n + (isObj(r) ? size(r.matches) : 0), 0);
  if (total > 128) {
    errors.push({ field: 'spec.rules', reason: `the total number of matches across all rules in a route must be at most 128 (is ${total})` });
  }
}

/** Any backend reference: "Must have port for Service reference". */
function serviceRefPortRule(ref: Obj, at: string, errors: FieldError[]): void {
  if (size(ref.group) === 0 && ref.kind === 'Service' && !has(ref, 'port')) {
    errors.push({ field: fieldPath(at, 'port'), reason: 'Must have port for Service reference' });
  }
}

/** TLSRoute, TCPRoute, UDPRoute `spec.rules[].backendRefs[]`: port for Services. */
export function backendRefPortRules(spec: Obj, errors: FieldError[]): void {
  for (const [r, i] of items(spec.rules)) {
    for (const [b, j] of items(r.backendRefs)) serviceRefPortRule(b, `spec.rules[${i}].backendRefs[${j}]`, errors);
  }
}

const RFC1123 = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$/;

/**
 * TLSRoute v1 `spec.hostnames`:
 * - Hostnames cannot contain an IP
 * - Hostnames must be valid based on RFC-1123
 * - Wildcards on hostnames must be the first label, and the rest of hostname must be valid based on RFC-1123
 */
export function tlsRouteHostnameRules(spec: Obj, errors: FieldError[]): void {
  if (!Array.isArray(spec.hostnames)) return;
  spec.hostnames.forEach((h, i) => {
    if (typeof h !== 'string') return;
    const at = `spec.hostnames[${i}]`;
    if (isIPv4(h) || isIPv6(h)) errors.push({ field: at, reason: 'Hostnames cannot contain an IP' });
    else if (!h.includes('*') && !RFC1123.test(h)) errors.push({ field: at, reason: 'Hostnames must be valid based on RFC-1123' });
    else if (h.includes('*') && !(h.startsWith('*.') && RFC1123.test(h.slice(2)))) {
      errors.push({ field: at, reason: 'Wildcards on hostnames must be the first label, and the rest of hostname must be valid based on RFC-1123' });
    }
  });
}

// ---------------------------------------------------------------- HTTPRoute

/** Filter types and the field each one needs (and no other filter field may be set). */
const HTTP_FILTER_FIELDS: Record<string, string> = {
  CORS: 'cors',
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  ExtensionRef: 'extensionRef',
  ExternalAuth: 'externalAuth',
};
const GRPC_FILTER_FIELDS: Record<string, string> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestMirror: 'requestMirror',
  ExtensionRef: 'extensionRef',
};
/** Filter types that may appear at most once in one filters list. */
const HTTP_UNREPEATABLE = ['CORS', 'RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'];
const GRPC_UNREPEATABLE = ['RequestHeaderModifier', 'ResponseHeaderModifier'];

/**
 * A `filters` list (of a rule or of a backendRef):
 * - May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both
 * - <Type> filter cannot be repeated (all but ExtensionRef, RequestMirror, ExternalAuth)
 * - filter.<field> must be nil if the filter.type is not <Type>
 * - filter.<field> must be specified for <Type> filter.type
 * and, inside each filter, the rules of CORS, ExternalAuth, RequestMirror,
 * RequestRedirect and URLRewrite.
 */
export function filterListRules(filters: unknown, at: string, grpc: boolean, errors: FieldError[]): void {
  const list = items(filters);
  if (!grpc && list.some(([f]) => f.type === 'RequestRedirect') && list.some(([f]) => f.type === 'URLRewrite')) {
    errors.push({ field: at, reason: 'May specify either RequestRedirect or URLRewrite filters, but not both' });
  }
  for (const type of grpc ? GRPC_UNREPEATABLE : HTTP_UNREPEATABLE) {
    const same = list.filter(([f]) => f.type === type);
    if (same.length > 1) errors.push({ field: `${indexPath(at, same[1][1])}.type`, reason: `${type} filter cannot be repeated` });
  }
  const fields = grpc ? GRPC_FILTER_FIELDS : HTTP_FILTER_FIELDS;
  for (const [f, i] of list) {
    const fat = indexPath(at, i);
    for (const [type, field] of Object.entries(fields)) {
      if (has(f, field) && f.type !== type) {
        errors.push({ field: `${fat}.${field}`, reason: `filter.${field} must be nil if the filter.type is not ${type}` });
      } else if (!has(f, field) && f.type === type) {
        errors.push({ field: `${fat}.${field}`, reason: `filter.${field} must be specified for ${type} filter.type` });
      }
    }
    const cors = obj(f.cors);
    if (cors && !grpc) {
      for (const [field, what] of [['allowHeaders', 'headers'], ['allowMethods', 'methods'], ['allowOrigins', 'origins']]) {
        const v = cors[field];
        if (Array.isArray(v) && v.includes('*') && v.length > 1) {
          errors.push({ field: `${fat}.cors.${field}`, reason: `${field} cannot contain '*' alongside other ${what}` });
        }
      }
    }
    const auth = obj(f.externalAuth);
    if (auth && !grpc) {
      if (auth.protocol === 'GRPC' && !has(auth, 'grpc')) errors.push({ field: `${fat}.externalAuth.grpc`, reason: "grpc must be specified when protocol is set to 'GRPC'" });
      if (has(auth, 'grpc') && auth.protocol !== 'GRPC') errors.push({ field: `${fat}.externalAuth.protocol`, reason: "protocol must be 'GRPC' when grpc is set" });
      if (auth.protocol === 'HTTP' && !has(auth, 'http')) errors.push({ field: `${fat}.externalAuth.http`, reason: "http must be specified when protocol is set to 'HTTP'" });
      if (has(auth, 'http') && auth.protocol !== 'HTTP') errors.push({ field: `${fat}.externalAuth.protocol`, reason: "protocol must be 'HTTP' when http is set" });
      const ref = obj(auth.backendRef);
      if (ref) serviceRefPortRule(ref, `${fat}.externalAuth.backendRef`, errors);
    }
    const mirror = obj(f.requestMirror);
    if (mirror) {
      if (has(mirror, 'percent') && has(mirror, 'fraction')) {
        errors.push({ field: `${fat}.requestMirror`, reason: 'Only one of percent or fraction may be specified in HTTPRequestMirrorFilter' });
      }
      const fraction = obj(mirror.fraction);
      if (fraction && typeof fraction.numerator === 'number' && typeof fraction.denominator === 'number' && fraction.numerator > fraction.denominator) {
        errors.push({ field: `${fat}.requestMirror.fraction.numerator`, reason: 'numerator must be less than or equal to denominator' });
      }
      const ref = obj(mirror.backendRef);
      if (ref) serviceRefPortRule(ref, `${fat}.requestMirror.backendRef`, errors);
    }
    if (!grpc) {
      for (const field of ['requestRedirect', 'urlRewrite']) {
        const p = obj(obj(f[field])?.path);
        if (p) pathModifierRules(p, `${fat}.${field}.path`, errors);
      }
    }
  }
}

/**
 * requestRedirect.path and urlRewrite.path:
 * - replaceFullPath must be specified when type is set to 'ReplaceFullPath'
 * - type must be 'ReplaceFullPath' when replaceFullPath is set
 * - replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'
 * - type must be 'ReplacePrefixMatch' when replacePrefixMatch is set
 */
function pathModifierRules(p: Obj, at: string, errors: FieldError[]): void {
  for (const type of ['ReplaceFullPath', 'ReplacePrefixMatch']) {
    const field = type[0].toLowerCase() + type.slice(1);
    if (p.type === type && !has(p, field)) errors.push({ field: `${at}.${field}`, reason: `${field} must be specified when type is set to '${type}'` });
    if (has(p, field) && p.type !== type) errors.push({ field: `${at}.type`, reason: `type must be '${type}' when ${field} is set` });
  }
}

function usesReplacePrefixMatch(filters: unknown, field: 'requestRedirect' | 'urlRewrite'): boolean {
  return items(filters).some(([f]) => {
    const p = obj(obj(f[field])?.path);
    return p !== undefined && p.type === 'ReplacePrefixMatch' && has(p, 'replacePrefixMatch');
  });
}

const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/;

/**
 * `spec.rules[].matches[].path`, for types Exact and PathPrefix: the value
 * must start with '/', must not contain '//', '/./', '/../', '%2f', '%2F'
 * or '#', must not end with '/..' or '/.', and must only contain valid
 * characters.
 */
export function pathMatchRules(path: Obj, at: string, errors: FieldError[]): void {
  if (path.type !== 'Exact' && path.type !== 'PathPrefix') return;
  const value = str(path.value);
  if (value === undefined) return;
  const vat = `${at}.value`;
  const push = (reason: string) => errors.push({ field: vat, reason });
  if (!value.startsWith('/')) push('must start with "/"');
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) if (value.includes(bad)) push(`must not contain ${JSON.stringify(bad)}`);
  for (const bad of ['/..', '/.']) if (value.endsWith(bad)) push(`must not end with ${JSON.stringify(bad)}`);
  if (!PATH_CHARS.test(value)) push(`must only contain valid characters (matching ${PATH_CHARS.source})`);
}

/**
 * `sessionPersistence` of an HTTPRoute or GRPCRoute rule:
 * - AbsoluteTimeout must be specified when cookie lifetimeType is Permanent
 * - cookie must be nil if type is not Cookie / must be specified for Cookie type
 * - header must be nil if type is not Header / must be specified for Header type
 */
function sessionPersistenceRules(sp: Obj, at: string, errors: FieldError[]): void {
  const cookie = obj(sp.cookie);
  if (cookie && cookie.lifetimeType === 'Permanent' && !has(sp, 'absoluteTimeout')) {
    errors.push({ field: `${at}.absoluteTimeout`, reason: 'AbsoluteTimeout must be specified when cookie lifetimeType is Permanent' });
  }
  for (const [type, field] of [['Cookie', 'cookie'], ['Header', 'header']]) {
    if (has(sp, field) && sp.type !== type) errors.push({ field: `${at}.${field}`, reason: `${field} must be nil if type is not ${type}` });
    if (sp.type === type && !has(sp, field)) errors.push({ field: `${at}.${field}`, reason: `${field} must be specified for ${type} type` });
  }
}

/** The rules on one HTTPRoute rule (`spec.rules[i]`) and everything under it. */
export function httpRouteRuleRules(rule: Obj, at: string, errors: FieldError[]): void {
  const backendRefs = items(rule.backendRefs);
  // RequestRedirect filter must not be used together with backendRefs
  if (backendRefs.length > 0 && items(rule.filters).some(([f]) => has(f, 'requestRedirect'))) {
    errors.push({ field: `${at}.filters`, reason: 'RequestRedirect filter must not be used together with backendRefs' });
  }
  // When using RequestRedirect / URLRewrite with path.replacePrefixMatch, exactly one PathPrefix match must be specified
  const matches = Array.isArray(rule.matches) ? rule.matches : [];
  const onePrefixMatch = matches.length === 1 && obj(obj(matches[0])?.path)?.type === 'PathPrefix';
  const prefixUsers: string[] = [];
  if (usesReplacePrefixMatch(rule.filters, 'requestRedirect')) prefixUsers.push('RequestRedirect filter');
  if (usesReplacePrefixMatch(rule.filters, 'urlRewrite')) prefixUsers.push('URLRewrite filter');
  if (backendRefs.some(([b]) => usesReplacePrefixMatch(b.filters, 'requestRedirect'))) prefixUsers.push('RequestRedirect filter within backendRefs');
  if (backendRefs.some(([b]) => usesReplacePrefixMatch(b.filters, 'urlRewrite'))) prefixUsers.push('URLRewrite filter within backendRefs');
  if (!onePrefixMatch) {
    for (const who of prefixUsers) {
      errors.push({ field: `${at}.matches`, reason: `When using ${who} with path.replacePrefixMatch, exactly one PathPrefix match must be specified` });
    }
  }
  filterListRules(rule.filters, `${at}.filters`, false, errors);
  for (const [b, j] of backendRefs) {
    serviceRefPortRule(b, `${at}.backendRefs[${j}]`, errors);
    filterListRules(b.filters, `${at}.backendRefs[${j}].filters`, false, errors);
  }
  for (const [m, j] of items(rule.matches)) {
    const path = obj(m.path);
    if (path) pathMatchRules(path, `${at}.matches[${j}].path`, errors);
  }
  const sp = obj(rule.sessionPersistence);
  if (sp) sessionPersistenceRules(sp, `${at}.sessionPersistence`, errors);
  // backendRequest timeout cannot be longer than request timeout
  const timeouts = obj(rule.timeouts);
  if (timeouts && typeof timeouts.request === 'string' && typeof timeouts.backendRequest === 'string') {
    const request = parseDuration(timeouts.request);
    const backend = parseDuration(timeouts.backendRequest);
    if (request !== null && backend !== null && request !== 0 && backend > request) {
      errors.push({ field: `${at}.timeouts.backendRequest`, reason: 'backendRequest timeout cannot be longer than request timeout' });
    }
  }
}

// ---------------------------------------------------------------- GRPCRoute

const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

/** The rules on one GRPCRoute rule (`spec.rules[i]`) and everything under it. */
export function grpcRouteRuleRules(rule: Obj, at: string, errors: FieldError[]): void {
  filterListRules(rule.filters, `${at}.filters`, true, errors);
  for (const [b, j] of items(rule.backendRefs)) {
    serviceRefPortRule(b, `${at}.backendRefs[${j}]`, errors);
    filterListRules(b.filters, `${at}.backendRefs[${j}].filters`, true, errors);
  }
  for (const [m, j] of items(rule.matches)) {
    const method = obj(m.method);
    if (!method) continue;
    const mat = `${at}.matches[${j}].method`;
    // One or both of 'service' or 'method' must be specified
    if (has(method, 'type') && !has(method, 'service') && !has(method, 'method')) {
      errors.push({ field: mat, reason: "One or both of 'service' or 'method' must be specified" });
    }
    if (!has(method, 'type') || method.type === 'Exact') {
      const service = str(method.service);
      if (service !== undefined && !GRPC_SERVICE.test(service)) {
        errors.push({ field: `${mat}.service`, reason: `service must only contain valid characters (matching ${GRPC_SERVICE.source}, case-insensitive)` });
      }
      const name = str(method.method);
      if (name !== undefined && !GRPC_METHOD.test(name)) {
        errors.push({ field: `${mat}.method`, reason: `method must only contain valid characters (matching ${GRPC_METHOD.source})` });
      }
    }
  }
  const sp = obj(rule.sessionPersistence);
  if (sp) sessionPersistenceRules(sp, `${at}.sessionPersistence`, errors);
}

// ---------------------------------------------------------------- BackendTLSPolicy

/**
 * BackendTLSPolicy:
 * - (targetRefs) sectionName must be specified when targetRefs includes 2 or more references to the same target
 * - (targetRefs) sectionName must be unique when targetRefs includes 2 or more references to the same target
 * - (validation) must not contain both CACertificateRefs and WellKnownCACertificates
 * - (validation) must specify either CACertificateRefs or WellKnownCACertificates
 * - (validation.subjectAltNames[]) Hostname / URI present exactly when the type says so
 */
export function backendTLSPolicyRules(spec: Obj, errors: FieldError[]): void {
  const refs = items(spec.targetRefs);
  for (const [p1, i] of refs) {
    for (const [p2, j] of refs) {
      if (j >= i || p1.group !== p2.group || p1.kind !== p2.kind || p1.name !== p2.name) continue;
      if (empty(p1, 'sectionName') !== empty(p2, 'sectionName')) {
        errors.push({ field: `spec.targetRefs[${i}]`, reason: `sectionName must be specified when targetRefs includes 2 or more references to the same target (see spec.targetRefs[${j}])` });
        break;
      }
      if (sameOptional(p1, p2, 'sectionName')) {
        errors.push({ field: `spec.targetRefs[${i}]`, reason: `sectionName must be unique when targetRefs includes 2 or more references to the same target (same as spec.targetRefs[${j}])` });
        break;
      }
    }
  }
  const v = obj(spec.validation);
  if (!v) return;
  const hasCA = size(v.caCertificateRefs) > 0;
  const hasWellKnown = has(v, 'wellKnownCACertificates') && v.wellKnownCACertificates !== '';
  if (hasCA && hasWellKnown) errors.push({ field: 'spec.validation', reason: 'must not contain both CACertificateRefs and WellKnownCACertificates' });
  if (!hasCA && !hasWellKnown) errors.push({ field: 'spec.validation', reason: 'must specify either CACertificateRefs or WellKnownCACertificates' });
  for (const [san, i] of items(v.subjectAltNames)) {
    const at = `spec.validation.subjectAltNames[${i}]`;
    for (const [type, field] of [['Hostname', 'hostname'], ['URI', 'uri']]) {
      if (san.type === type && empty(san, field)) errors.push({ field: `${at}.${field}`, reason: `SubjectAltName element must contain ${type}, if Type is set to ${type}` });
      if (san.type !== type && !empty(san, field)) errors.push({ field: `${at}.${field}`, reason: `SubjectAltName element must not contain ${type}, if Type is not set to ${type}` });
    }
  }
}
