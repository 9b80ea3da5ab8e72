// Names and labels of the objects provisioned for a Gateway (GEP-1762).
//
// Every object made for Gateway `gw` of class `cls` is named `gw-cls`, the
// same for every kind (kinds have separate name spaces), so that an
// operator finds them all with one name and policies can attach to them.
// That name must also be a Service name: a DNS-1035 label, at most 63
// characters, starting with a letter. Names that are not are made into one
// and given a hash of the original, so that two Gateways never map to the
// same name by shortening.
import { createHash } from 'node:crypto';

/** The most a DNS-1035/1123 label (object name, label value) may hold. */
export const MAX_LABEL_LENGTH = 63;

/** Hex digits of the hash that makes a shortened name unique. */
const NAME_HASH_LENGTH = 10;

export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const GATEWAY_CLASS_NAME_LABEL = 'gateway.networking.k8s.io/gateway-class-name';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const APP_NAME_LABEL = 'app.kubernetes.io/name';
export const INSTANCE_LABEL = 'app.kubernetes.io/instance';

export const MANAGED_BY = 'gatehouse';
export const PROXY_APP_NAME = 'gatehouse-proxy';

const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * The name of every object provisioned for a Gateway: `<gateway>-<class>`
 * when that is a valid DNS-1035 label; otherwise the same made valid
 * (lower case, characters other than [a-z0-9-] turned into '-', a leading
 * 'g' when it does not start with a letter), cut to fit, and ended with
 * '-' and 10 hex digits of the SHA-256 of `<gateway>-<class>`. Stable: the
 * same Gateway and class always give the same name.
 */
export function infrastructureName(gatewayName: string, className: string): string {
  const plain = `${gatewayName}-${className}`;
  if (plain.length <= MAX_LABEL_LENGTH && DNS1035_LABEL.test(plain)) return plain;
  let base = plain.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  if (!/^[a-z]/.test(base)) base = `g${base}`;
  const room = MAX_LABEL_LENGTH - NAME_HASH_LENGTH - 1;
  base = base.slice(0, room).replace(/-+$/, '');
  return `${base}-${sha256Hex(plain).slice(0, NAME_HASH_LENGTH)}`;
}

/**
 * A name as a label value, the way GEP-1762 says for the gateway-name
 * label: itself when it fits in 63 characters; otherwise its first 20
 * characters, '-', and the SHA-1 of the rest (40 hex digits), 61 in all.
 * (Object names are DNS-1123 subdomains: they start and end with an
 * alphanumeric and hold only [a-z0-9.-], all valid in a label value.)
 */
export function nameLabelValue(name: string): string {
  if (name.length <= MAX_LABEL_LENGTH) return name;
  const rest = createHash('sha1').update(name.slice(20)).digest('hex');
  return `${name.slice(0, 20)}-${rest}`;
}

/**
 * The labels that select a Gateway's proxy pods: in the Deployment's
 * selector (immutable once created), the Service's selector and the PDB's.
 * They depend only on the Gateway's name and the object name, both fixed
 * for the life of a Deployment (a Gateway moved to another class gets new
 * objects under a new name), and never on user-set labels.
 */
export function selectorLabels(gatewayName: string, objectName: string): Record<string, string> {
  return {
    [APP_NAME_LABEL]: PROXY_APP_NAME,
    [INSTANCE_LABEL]: objectName,
    [GATEWAY_NAME_LABEL]: nameLabelValue(gatewayName),
  };
}

/** The labels Gatehouse sets on every object it provisions (and on the pods). */
export function ownLabels(gatewayName: string, className: string, objectName: string): Record<string, string> {
  return {
    ...selectorLabels(gatewayName, objectName),
    [GATEWAY_CLASS_NAME_LABEL]: nameLabelValue(className),
    [MANAGED_BY_LABEL]: MANAGED_BY,
  };
}

/**
 * The label selector (for a LIST) that finds every object provisioned for
 * one Gateway, whatever its class: how stale objects are found and pruned.
 */
export function provisionedSelector(gatewayName: string): string {
  return `${MANAGED_BY_LABEL}=${MANAGED_BY},${GATEWAY_NAME_LABEL}=${nameLabelValue(gatewayName)}`;
}

/** Where a name that fits as an object name of every provisioned kind is required. */
export function isDNS1035Label(s: string): boolean {
  return s.length <= MAX_LABEL_LENGTH && DNS1035_LABEL.test(s);
}
