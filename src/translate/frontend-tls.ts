// Gateway `spec.tls.frontend`: client certificate validation on HTTPS
// listeners (GEP-91). `default` applies to every HTTPS port, a `perPort`
// entry replaces it on its port. Each validation names CA bundles
// (ConfigMap or Secret, key `ca.crt`) that client certificates must chain
// to; `mode: AllowInsecureFallback` lets clients without a valid
// certificate through as well (the Gateway then says so in its
// InsecureFrontendValidationMode condition).
//
// Bad references are reported on every HTTPS listener of the port they
// apply to (ResolvedRefs False: InvalidCACertificateKind,
// RefNotPermitted, InvalidCACertificateRef); when none is usable the
// listener is not Accepted (NoValidCACertificate) and is not served: a
// validation that cannot be done is not skipped.
import { X509Certificate } from 'node:crypto';
import type { ConfigMap, Gateway, ReferenceGrant, Secret } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';
import type { ClientValidation } from '../ir/types.ts';
import { isReferenceAllowed, normGroup } from './referencegrant.ts';
import { secretValue } from './certificates.ts';

/** The experimental `spec.tls` of a Gateway, as far as frontend validation reads it. */
interface GatewayTLS {
  frontend?: {
    default?: { validation?: FrontendValidation };
    perPort?: { port: number; tls?: { validation?: FrontendValidation } }[];
  };
}

interface FrontendValidation {
  caCertificateRefs?: { group?: string; kind?: string; name: string; namespace?: string }[];
  mode?: 'AllowValidOnly' | 'AllowInsecureFallback';
}

export type CAProblemReason = 'InvalidCACertificateRef' | 'InvalidCACertificateKind' | 'RefNotPermitted';

/** What a port's HTTPS listeners get. */
export interface PortValidation {
  /** null: no usable CA, the listeners are not Accepted (problem is set). */
  validation: ClientValidation | null;
  /** The first bad reference, for ResolvedRefs; null when all resolved. */
  problem: { reason: CAProblemReason; message: string } | null;
}

export interface CASources {
  configMaps: Map<string, ConfigMap>;
  secrets: Map<string, Secret>;
  grants: ReferenceGrant[];
}

function frontendOf(gateway: Gateway): GatewayTLS['frontend'] {
  return (gateway.spec.tls as GatewayTLS | undefined)?.frontend;
}

/** The validation an HTTPS listener on `port` gets; null when the Gateway asks for none there. */
export function validationForPort(gateway: Gateway, port: number, sources: CASources): PortValidation | null {
  const frontend = frontendOf(gateway);
  if (frontend === undefined) return null;
  const perPort = frontend.perPort?.find((p) => p.port === port);
  const validation = perPort !== undefined ? perPort.tls?.validation : frontend.default?.validation;
  if (validation === undefined) return null;
  const where = perPort !== undefined ? `tls.frontend.perPort[port ${port}].validation` : 'tls.frontend.default.validation';
  return resolveValidation(gateway, validation, where, sources);
}

/** Whether any of the Gateway's frontend validations allows insecure fallback (its InsecureFrontendValidationMode condition). */
export function allowsInsecureFallback(gateway: Gateway): boolean {
  const frontend = frontendOf(gateway);
  if (frontend === undefined) return false;
  return frontend.default?.validation?.mode === 'AllowInsecureFallback'
    || (frontend.perPort ?? []).some((p) => p.tls?.validation?.mode === 'AllowInsecureFallback');
}

function resolveValidation(gateway: Gateway, v: FrontendValidation, where: string, sources: CASources): PortValidation {
  const bundles: string[] = [];
  let problem: PortValidation['problem'] = null;
  const refs = v.caCertificateRefs ?? [];
  refs.forEach((ref, index) => {
    const result = resolveCARef(gateway, ref, `${where}.caCertificateRefs[${index}]`, sources);
    if (typeof result === 'string') bundles.push(result);
    else problem ??= result;
  });
  if (refs.length === 0) problem = { reason: 'InvalidCACertificateRef', message: `${where}.caCertificateRefs is empty` };
  if (bundles.length === 0) return { validation: null, problem };
  return { validation: { caCertificates: bundles.join('\n'), mode: v.mode ?? 'AllowValidOnly' }, problem };
}

/** The PEM bundle of one reference, or why it cannot be used. */
function resolveCARef(
  gateway: Gateway,
  ref: NonNullable<FrontendValidation['caCertificateRefs']>[number],
  where: string,
  sources: CASources,
): string | { reason: CAProblemReason; message: string } {
  const group = normGroup(ref.group);
  const kind = ref.kind ?? 'ConfigMap';
  const ns = ref.namespace ?? namespaceOf(gateway);
  const what = `${where} (${kind} ${ns}/${ref.name})`;
  if (group !== '' || (kind !== 'ConfigMap' && kind !== 'Secret')) {
    return { reason: 'InvalidCACertificateKind', message: `${where}: kind ${group || 'core'}/${kind} is not supported; use a core ConfigMap or Secret with key ca.crt` };
  }
  const allowed = isReferenceAllowed({
    from: { group: GATEWAY_GROUP, kind: 'Gateway', namespace: namespaceOf(gateway) },
    to: { group: '', kind, namespace: ns, name: ref.name },
  }, sources.grants);
  if (!allowed) {
    return { reason: 'RefNotPermitted', message: `${what}: no ReferenceGrant in ${ns} allows Gateways in ${namespaceOf(gateway)} to refer to it` };
  }
  const key = `${ns}/${ref.name}`;
  let pem: string | null | undefined;
  if (kind === 'ConfigMap') {
    const cm = sources.configMaps.get(key);
    if (cm === undefined) return { reason: 'InvalidCACertificateRef', message: `${what}: not found` };
    pem = cm.data?.['ca.crt'];
  } else {
    const secret = sources.secrets.get(key);
    if (secret === undefined) return { reason: 'InvalidCACertificateRef', message: `${what}: not found` };
    pem = secretValue(secret, 'ca.crt');
  }
  if (!pem) return { reason: 'InvalidCACertificateRef', message: `${what}: has no key ca.crt` };
  const checked = checkBundle(pem);
  if (checked !== null) return { reason: 'InvalidCACertificateRef', message: `${what}: ${checked}` };
  return pem;
}

/** null when every block of the bundle is a CA certificate node can load; else what is wrong. */
function checkBundle(pem: string): string | null {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) return 'ca.crt holds no PEM certificate (no BEGIN CERTIFICATE block)';
  for (const [i, block] of blocks.entries()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (e) {
      // A CA bundle is public: OpenSSL's reason may be quoted.
      return `ca.crt certificate ${i} is malformed (${(e as { code?: string }).code ?? 'unreadable'})`;
    }
    if (!cert.ca) return `ca.crt certificate ${i} (${cert.subject.replace(/\n/g, ', ')}) is not a CA certificate (basicConstraints CA:FALSE or absent)`;
  }
  return null;
}
