// validateObject: one raw object (as parsed from YAML or JSON) in, the
// object the API server would store out (pruned, defaulted), or the field
// errors for which the API server would have refused it.
//
// Gateway API kinds are checked against their CRD schema (schema.ts) and
// the CRD's own CEL rules (rules.ts); core kinds Gatehouse reads
// (Namespace, Service, EndpointSlice, Secret, ConfigMap) by the
// hand-written checks below; every other kind is ignored.
//
// Warnings are what the object is accepted with but should know about: an
// older spelling of a field read as the newer one (compat.ts), an unknown
// field dropped. An object with warnings and no errors is valid.
import { checkRules, RULES_NOT_CHECKED } from './rules.ts';
import { readOlderSpellings } from './compat.ts';
import { applyDefaults, isIPv4, isIPv6, prune, schemaFor, splitAPIVersion, validateSchema, type Dropped, type SchemaCheck } from './schema.ts';
import { indexPath, jsonType, keyPath, showValue } from './errors.ts';
import type { FieldError } from './errors.ts';
import type { KubeObject } from './types.ts';

export type { FieldError } from './errors.ts';

export interface ValidationResult {
  /** The defaulted, pruned copy; null when there are errors or the kind is ignored. */
  object: KubeObject | null;
  errors: FieldError[];
  /** What the object is accepted with but should be told: older spellings read as newer ones, unknown fields dropped. */
  warnings: FieldError[];
  /** True for an object of a kind Gatehouse does not read (not an error). */
  ignored: boolean;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Core kinds Gatehouse reads, by `apiVersion kind`; the value says whether they are namespaced. */
const CORE_KINDS: Record<string, { apiVersion: string; namespaced: boolean; check: (o: Obj, errors: FieldError[]) => void }> = {
  Namespace: { apiVersion: 'v1', namespaced: false, check: () => {} },
  Service: { apiVersion: 'v1', namespaced: true, check: checkService },
  Secret: { apiVersion: 'v1', namespaced: true, check: checkSecret },
  ConfigMap: { apiVersion: 'v1', namespaced: true, check: checkConfigMap },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', namespaced: true, check: checkEndpointSlice },
};

/** True for the kinds that live in a namespace (every kind Gatehouse reads but Namespace and GatewayClass). */
export function isNamespacedKind(kind: string): boolean {
  if (kind === 'Namespace' || kind === 'GatewayClass') return false;
  return true;
}

/** `Kind namespace/name` (`Kind name` for cluster-scoped kinds), the way errors name an object. */
export function describeObject(kind: string, namespace: string | undefined, name: string): string {
  return isNamespacedKind(kind) ? `${kind} ${namespace || 'default'}/${name}` : `${kind} ${name}`;
}

/**
 * The identity of a raw object, read without validating it (so that an
 * invalid object can still be named, and matched to its previous version):
 * `{ kind, namespace, name }`, or null when it has no kind or name.
 */
export function identityOf(raw: unknown): { kind: string; namespace: string; name: string } | null {
  if (!isObj(raw) || typeof raw.kind !== 'string' || !raw.kind) return null;
  const meta = isObj(raw.metadata) ? raw.metadata : {};
  if (typeof meta.name !== 'string' || !meta.name) return null;
  const namespace = isNamespacedKind(raw.kind) ? (typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default') : '';
  return { kind: raw.kind, namespace, name: meta.name };
}

export function validateObject(raw: unknown): ValidationResult {
  const errors: FieldError[] = [];
  const warnings: FieldError[] = [];
  const fail = (): ValidationResult => ({ object: null, errors, warnings, ignored: false });
  if (!isObj(raw)) {
    errors.push({ field: '', reason: `must be an object, not ${jsonType(raw)}` });
    return fail();
  }
  if (typeof raw.apiVersion !== 'string' || !raw.apiVersion) errors.push({ field: 'apiVersion', reason: raw.apiVersion === undefined ? 'is required' : 'must be a non-empty string' });
  if (typeof raw.kind !== 'string' || !raw.kind) errors.push({ field: 'kind', reason: raw.kind === undefined ? 'is required' : 'must be a non-empty string' });
  if (errors.length) {
    if (!isObj(raw.metadata) || typeof raw.metadata.name !== 'string') errors.push({ field: 'metadata.name', reason: 'is required' });
    return fail();
  }
  const apiVersion = raw.apiVersion as string;
  const kind = raw.kind as string;

  const lookup = schemaFor(apiVersion, kind);
  const known = Object.hasOwn(CORE_KINDS, kind) ? CORE_KINDS[kind] : undefined;
  const core = known && splitAPIVersion(known.apiVersion).group === splitAPIVersion(apiVersion).group ? known : undefined;
  if (!lookup.found && lookup.reason) {
    errors.push({ field: 'apiVersion', reason: lookup.reason });
    return fail();
  }
  if (!lookup.found && !core) return { object: null, errors, warnings, ignored: true };
  if (core && apiVersion !== core.apiVersion) {
    errors.push({ field: 'apiVersion', reason: `version ${splitAPIVersion(apiVersion).version} of ${kind} is not served (served: ${core.apiVersion})` });
    return fail();
  }

  const o = structuredClone(raw) as Obj;
  const namespaced = lookup.found ? lookup.crd.namespaced : core!.namespaced;
  checkMetadata(o, kind, namespaced, errors);

  if (lookup.found) {
    // The status subresource: what a client writes into status is dropped,
    // and the status the CRD defaults (Pending conditions) is left to the
    // status owner to write.
    delete o.status;
    readOlderSpellings(o, kind, lookup.version, warnings);
    const skip = new Set(['metadata', 'status']);
    const dropped: Dropped = { paths: [], more: 0 };
    prune(o, lookup.schema, skip, dropped);
    for (const field of dropped.paths) warnings.push({ field, reason: `unknown field, ignored: ${apiVersion} ${kind} as Gatehouse implements it has no such field` });
    if (dropped.more) warnings.push({ field: '', reason: `${dropped.more} more unknown fields, ignored` });
    applyDefaults(o, lookup.schema, skip);
    const check: SchemaCheck = { blocking: false };
    validateSchema(o, lookup.schema, '', errors, skip, check);
    // As the API server: the rules may rely on types, enums, required
    // fields and maximums, so they run only when those hold.
    if (check.blocking) errors.push({ field: '', reason: RULES_NOT_CHECKED });
    else errors.push(...checkRules(o, lookup.schema, skip));
  } else {
    core!.check(o, errors);
  }
  if (errors.length) return fail();
  return { object: o as KubeObject, errors, warnings, ignored: false };
}

// ---------------------------------------------------------------- metadata

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** ObjectMeta fields the API server keeps; anything else under metadata is dropped. */
const METADATA_FIELDS = new Set([
  'name', 'generateName', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp',
  'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations', 'ownerReferences', 'finalizers', 'managedFields', 'selfLink',
]);

export function dnsSubdomainError(v: string): string | null {
  if (v.length > 253) return `must be no more than 253 characters (is ${v.length})`;
  if (!DNS1123_SUBDOMAIN.test(v)) return `invalid value ${showValue(v)}: must be a lowercase RFC 1123 subdomain (lowercase alphanumerics, '-' and '.', starting and ending with an alphanumeric)`;
  return null;
}

export function dnsLabelError(v: string): string | null {
  if (v.length > 63) return `must be no more than 63 characters (is ${v.length})`;
  if (!DNS1123_LABEL.test(v)) return `invalid value ${showValue(v)}: must be a lowercase RFC 1123 label (lowercase alphanumerics and '-', starting and ending with an alphanumeric)`;
  return null;
}

function dns1035LabelError(v: string): string | null {
  if (v.length > 63) return `must be no more than 63 characters (is ${v.length})`;
  if (!DNS1035_LABEL.test(v)) return `invalid value ${showValue(v)}: must be a lowercase RFC 1035 label (lowercase alphanumerics and '-', starting with a letter and ending with an alphanumeric)`;
  return null;
}

/** A label or annotation key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters. */
function qualifiedNameError(key: string): string | null {
  const parts = key.split('/');
  if (parts.length > 2) return 'must be a qualified name: an optional DNS subdomain prefix and "/", then a name';
  const name = parts[parts.length - 1];
  if (parts.length === 2) {
    if (!parts[0]) return 'the prefix before "/" must not be empty';
    const e = dnsSubdomainError(parts[0]);
    if (e) return `prefix ${e}`;
  }
  if (!name) return 'name part must not be empty';
  if (name.length > 63) return 'name part must be no more than 63 characters';
  if (!QUALIFIED_NAME.test(name)) return "name part must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";
  return null;
}

function checkMetadata(o: Obj, kind: string, namespaced: boolean, errors: FieldError[]): void {
  if (!isObj(o.metadata)) {
    errors.push({ field: o.metadata === undefined ? 'metadata.name' : 'metadata', reason: o.metadata === undefined ? 'is required' : `must be of type object, not ${jsonType(o.metadata)}` });
    return;
  }
  const meta = o.metadata;
  for (const key of Object.keys(meta)) if (!METADATA_FIELDS.has(key) || meta[key] === null) delete meta[key];
  if (typeof meta.name !== 'string' || !meta.name) {
    errors.push({ field: 'metadata.name', reason: meta.name === undefined || meta.name === '' ? 'is required' : `must be of type string, not ${jsonType(meta.name)}` });
  } else {
    const e = kind === 'Namespace' ? dnsLabelError(meta.name) : kind === 'Service' ? dns1035LabelError(meta.name) : dnsSubdomainError(meta.name);
    if (e) errors.push({ field: 'metadata.name', reason: e });
  }
  if (namespaced) {
    if (meta.namespace === undefined || meta.namespace === '') meta.namespace = 'default';
    if (typeof meta.namespace !== 'string') errors.push({ field: 'metadata.namespace', reason: `must be of type string, not ${jsonType(meta.namespace)}` });
    else {
      const e = dnsLabelError(meta.namespace);
      if (e) errors.push({ field: 'metadata.namespace', reason: e });
    }
  } else {
    delete meta.namespace;
  }
  checkStringMap(meta, 'labels', 'metadata.labels', errors, (k, v, at) => {
    const ke = qualifiedNameError(k);
    if (ke) errors.push({ field: at, reason: `invalid label key: ${ke}` });
    if (v.length > 63) errors.push({ field: at, reason: 'label value must be no more than 63 characters' });
    else if (!LABEL_VALUE.test(v)) errors.push({ field: at, reason: `invalid label value ${showValue(v)}: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric` });
  });
  let annotationBytes = 0;
  checkStringMap(meta, 'annotations', 'metadata.annotations', errors, (k, v, at) => {
    const ke = qualifiedNameError(k);
    if (ke) errors.push({ field: at, reason: `invalid annotation key: ${ke}` });
    annotationBytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  });
  if (annotationBytes > 256 * 1024) errors.push({ field: 'metadata.annotations', reason: 'must have at most 262144 bytes' });
  if (meta.generation !== undefined && !(typeof meta.generation === 'number' && Number.isInteger(meta.generation))) {
    errors.push({ field: 'metadata.generation', reason: `must be of type integer, not ${jsonType(meta.generation)}` });
  }
  for (const f of ['creationTimestamp', 'uid', 'resourceVersion', 'generateName']) {
    if (meta[f] !== undefined && typeof meta[f] !== 'string') errors.push({ field: `metadata.${f}`, reason: `must be of type string, not ${jsonType(meta[f])}` });
  }
  if (typeof meta.creationTimestamp === 'string' && Number.isNaN(Date.parse(meta.creationTimestamp))) {
    errors.push({ field: 'metadata.creationTimestamp', reason: `invalid value ${showValue(meta.creationTimestamp)}: must be an RFC 3339 date-time` });
  }
}

/** A map of string to string at `o[key]`; calls `each` on each entry. */
function checkStringMap(o: Obj, key: string, at: string, errors: FieldError[], each?: (k: string, v: string, at: string) => void): void {
  const m = o[key];
  if (m === undefined) return;
  if (!isObj(m)) {
    errors.push({ field: at, reason: `must be a map of string to string, not ${jsonType(m)}` });
    return;
  }
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== 'string') errors.push({ field: keyPath(at, k), reason: `must be of type string, not ${jsonType(v)}` });
    else each?.(k, v, keyPath(at, k));
  }
}

// ---------------------------------------------------------------- core kinds

function checkPort(v: unknown, at: string, errors: FieldError[], min = 1): void {
  if (typeof v !== 'number' || !Number.isInteger(v)) errors.push({ field: at, reason: `must be of type integer, not ${jsonType(v)}` });
  else if (v < min || v > 65535) errors.push({ field: at, reason: `must be between ${min} and 65535, inclusive (is ${v})` });
}

const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];

/** Service: ports (numbers, protocols, names), type, selector; defaults type, protocol and targetPort. */
function checkService(o: Obj, errors: FieldError[]): void {
  if (o.spec === undefined) o.spec = {};
  if (!isObj(o.spec)) {
    errors.push({ field: 'spec', reason: `must be of type object, not ${jsonType(o.spec)}` });
    return;
  }
  const spec = o.spec;
  spec.type ??= 'ClusterIP';
  const types = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
  if (!types.includes(spec.type as string)) errors.push({ field: 'spec.type', reason: `unsupported value ${showValue(spec.type)}: must be one of ${types.map((t) => JSON.stringify(t)).join(', ')}` });
  if (spec.type === 'ExternalName') {
    if (typeof spec.externalName !== 'string' || !spec.externalName) errors.push({ field: 'spec.externalName', reason: 'is required for type ExternalName' });
    else {
      const e = dnsSubdomainError(spec.externalName.replace(/\.$/, ''));
      if (e) errors.push({ field: 'spec.externalName', reason: e });
    }
  }
  checkStringMap(spec, 'selector', 'spec.selector', errors);
  if (spec.clusterIP !== undefined && typeof spec.clusterIP !== 'string') errors.push({ field: 'spec.clusterIP', reason: `must be of type string, not ${jsonType(spec.clusterIP)}` });
  const headless = spec.clusterIP === 'None';
  if (spec.ports === undefined || spec.ports === null) {
    if (spec.type !== 'ExternalName' && !headless) errors.push({ field: 'spec.ports', reason: 'is required' });
    return;
  }
  if (!Array.isArray(spec.ports)) {
    errors.push({ field: 'spec.ports', reason: `must be of type array, not ${jsonType(spec.ports)}` });
    return;
  }
  const names = new Map<string, number>();
  const seen = new Map<string, number>();
  spec.ports.forEach((p, i) => {
    const at = indexPath('spec.ports', i);
    if (!isObj(p)) {
      errors.push({ field: at, reason: `must be of type object, not ${jsonType(p)}` });
      return;
    }
    if (p.port === undefined) errors.push({ field: `${at}.port`, reason: 'is required' });
    else checkPort(p.port, `${at}.port`, errors);
    p.protocol ??= 'TCP';
    if (!PROTOCOLS.includes(p.protocol as string)) errors.push({ field: `${at}.protocol`, reason: `unsupported value ${showValue(p.protocol)}: must be one of "TCP", "UDP", "SCTP"` });
    if (p.targetPort === undefined || p.targetPort === 0) p.targetPort = p.port;
    if (typeof p.targetPort === 'string') {
      if (/^\d+$/.test(p.targetPort)) p.targetPort = Number(p.targetPort);
      else if (p.targetPort.length > 15 || !IANA_SVC_NAME.test(p.targetPort) || !/[a-z]/.test(p.targetPort) || p.targetPort.includes('--')) {
        errors.push({ field: `${at}.targetPort`, reason: `invalid value ${showValue(p.targetPort)}: must be a port number or an IANA service name (at most 15 lowercase alphanumerics and '-')` });
      }
    }
    if (typeof p.targetPort !== 'string') checkPort(p.targetPort, `${at}.targetPort`, errors);
    if (p.nodePort !== undefined) checkPort(p.nodePort, `${at}.nodePort`, errors);
    if (p.appProtocol !== undefined && typeof p.appProtocol !== 'string') errors.push({ field: `${at}.appProtocol`, reason: `must be of type string, not ${jsonType(p.appProtocol)}` });
    if (p.name === undefined || p.name === '') {
      if ((spec.ports as unknown[]).length > 1) errors.push({ field: `${at}.name`, reason: 'is required when there is more than one port' });
    } else if (typeof p.name !== 'string') {
      errors.push({ field: `${at}.name`, reason: `must be of type string, not ${jsonType(p.name)}` });
    } else {
      const e = dnsLabelError(p.name);
      if (e) errors.push({ field: `${at}.name`, reason: e });
      const first = names.get(p.name);
      if (first !== undefined) errors.push({ field: `${at}.name`, reason: `duplicate port name ${showValue(p.name)} (also spec.ports[${first}])` });
      else names.set(p.name, i);
    }
    const key = `${p.port}/${p.protocol}`;
    const first = seen.get(key);
    if (first !== undefined) errors.push({ field: at, reason: `duplicate port ${key} (also spec.ports[${first}])` });
    else seen.set(key, i);
  });
}

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'];

/** EndpointSlice: addressType, endpoints with addresses of that type, ports. */
function checkEndpointSlice(o: Obj, errors: FieldError[]): void {
  if (o.addressType === undefined) errors.push({ field: 'addressType', reason: 'is required' });
  else if (!ADDRESS_TYPES.includes(o.addressType as string)) errors.push({ field: 'addressType', reason: `unsupported value ${showValue(o.addressType)}: must be one of "IPv4", "IPv6", "FQDN"` });
  if (o.endpoints !== undefined && o.endpoints !== null) {
    if (!Array.isArray(o.endpoints)) errors.push({ field: 'endpoints', reason: `must be of type array, not ${jsonType(o.endpoints)}` });
    else o.endpoints.forEach((ep, i) => {
      const at = indexPath('endpoints', i);
      if (!isObj(ep)) {
        errors.push({ field: at, reason: `must be of type object, not ${jsonType(ep)}` });
        return;
      }
      if (!Array.isArray(ep.addresses) || ep.addresses.length === 0) {
        errors.push({ field: `${at}.addresses`, reason: ep.addresses === undefined ? 'is required' : 'must be a non-empty array of addresses' });
      } else {
        if (ep.addresses.length > 100) errors.push({ field: `${at}.addresses`, reason: 'must have at most 100 items' });
        ep.addresses.forEach((a, j) => {
          const aat = indexPath(`${at}.addresses`, j);
          if (typeof a !== 'string') errors.push({ field: aat, reason: `must be of type string, not ${jsonType(a)}` });
          else if (o.addressType === 'IPv4' && !isIPv4(a)) errors.push({ field: aat, reason: `invalid value ${showValue(a)}: must be a valid IPv4 address` });
          else if (o.addressType === 'IPv6' && !isIPv6(a)) errors.push({ field: aat, reason: `invalid value ${showValue(a)}: must be a valid IPv6 address` });
          else if (o.addressType === 'FQDN') {
            const e = dnsSubdomainError(a);
            if (e) errors.push({ field: aat, reason: e });
          }
        });
      }
      if (ep.conditions !== undefined && ep.conditions !== null) {
        if (!isObj(ep.conditions)) errors.push({ field: `${at}.conditions`, reason: `must be of type object, not ${jsonType(ep.conditions)}` });
        else for (const c of ['ready', 'serving', 'terminating']) {
          const v = ep.conditions[c];
          if (v !== undefined && v !== null && typeof v !== 'boolean') errors.push({ field: `${at}.conditions.${c}`, reason: `must be of type boolean, not ${jsonType(v)}` });
        }
      }
    });
  }
  if (o.ports !== undefined && o.ports !== null) {
    if (!Array.isArray(o.ports)) errors.push({ field: 'ports', reason: `must be of type array, not ${jsonType(o.ports)}` });
    else o.ports.forEach((p, i) => {
      const at = indexPath('ports', i);
      if (!isObj(p)) {
        errors.push({ field: at, reason: `must be of type object, not ${jsonType(p)}` });
        return;
      }
      if (p.port !== undefined && p.port !== null) checkPort(p.port, `${at}.port`, errors, 0);
      p.protocol ??= 'TCP';
      if (!PROTOCOLS.includes(p.protocol as string)) errors.push({ field: `${at}.protocol`, reason: `unsupported value ${showValue(p.protocol)}: must be one of "TCP", "UDP", "SCTP"` });
      if (p.name !== undefined && p.name !== null && typeof p.name !== 'string') errors.push({ field: `${at}.name`, reason: `must be of type string, not ${jsonType(p.name)}` });
      if (p.appProtocol !== undefined && p.appProtocol !== null && typeof p.appProtocol !== 'string') errors.push({ field: `${at}.appProtocol`, reason: `must be of type string, not ${jsonType(p.appProtocol)}` });
    });
  }
}

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function checkConfigKey(k: string, at: string, errors: FieldError[]): void {
  if (k.length > 253 || !CONFIG_KEY.test(k)) errors.push({ field: at, reason: "invalid key: must consist of at most 253 alphanumerics, '-', '_' or '.'" });
}

/**
 * A map of base64 values (Secret data, ConfigMap binaryData). Newlines in a
 * value are dropped, as Go's base64 decoder skips them.
 */
function checkBase64Map(o: Obj, key: string, errors: FieldError[]): void {
  const m = o[key];
  if (m === undefined || m === null) return;
  if (!isObj(m)) {
    errors.push({ field: key, reason: `must be a map of string to base64 string, not ${jsonType(m)}` });
    return;
  }
  for (const [k, v] of Object.entries(m)) {
    const at = keyPath(key, k);
    checkConfigKey(k, at, errors);
    if (typeof v !== 'string') {
      errors.push({ field: at, reason: `must be a base64 string, not ${jsonType(v)}` });
      continue;
    }
    const clean = v.replace(/[\r\n]/g, '');
    if (!BASE64.test(clean)) errors.push({ field: at, reason: 'must be valid base64 (standard alphabet, padded)' });
    else m[k] = clean;
  }
}

/**
 * Secret: data is base64, stringData is merged into data (base64-encoded)
 * and dropped, as the API server does; type defaults to Opaque;
 * kubernetes.io/tls needs tls.crt and tls.key.
 */
function checkSecret(o: Obj, errors: FieldError[]): void {
  o.type ??= 'Opaque';
  if (typeof o.type !== 'string') errors.push({ field: 'type', reason: `must be of type string, not ${jsonType(o.type)}` });
  checkBase64Map(o, 'data', errors);
  if (o.stringData !== undefined && o.stringData !== null) {
    checkStringMap(o, 'stringData', 'stringData', errors, (k, _v, at) => checkConfigKey(k, at, errors));
    if (isObj(o.stringData)) {
      const data: Obj = isObj(o.data) ? o.data : {};
      for (const [k, v] of Object.entries(o.stringData)) if (typeof v === 'string') data[k] = Buffer.from(v, 'utf8').toString('base64');
      o.data = data;
    }
  }
  delete o.stringData;
  if (o.data === null) delete o.data;
  if (o.type === 'kubernetes.io/tls') {
    const data = isObj(o.data) ? o.data : {};
    for (const k of ['tls.crt', 'tls.key']) if (data[k] === undefined) errors.push({ field: keyPath('data', k), reason: 'is required for a Secret of type kubernetes.io/tls' });
  }
}

/** ConfigMap: data is string to string, binaryData is base64; no key in both. */
function checkConfigMap(o: Obj, errors: FieldError[]): void {
  if (o.data === null) delete o.data;
  checkStringMap(o, 'data', 'data', errors, (k, _v, at) => checkConfigKey(k, at, errors));
  checkBase64Map(o, 'binaryData', errors);
  if (isObj(o.data) && isObj(o.binaryData)) {
    for (const k of Object.keys(o.binaryData)) if (k in o.data) errors.push({ field: keyPath('binaryData', k), reason: 'duplicate of a key in data' });
  }
}
