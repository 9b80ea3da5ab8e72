// Listener certificateRefs: resolve a reference to a Secret of type
// kubernetes.io/tls and check its PEM before any of it reaches a socket.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { Gateway, Secret, SecretObjectReference, ReferenceGrant } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';
import { isReferenceAllowed, normGroup } from './referencegrant.ts';

export type CertificateResult =
  | { ok: true; certChain: string; privateKey: string }
  | { ok: false; reason: 'InvalidCertificateRef' | 'RefNotPermitted'; message: string };

export function resolveCertificateRef(
  gateway: Gateway, ref: SecretObjectReference, secrets: Map<string, Secret>, grants: ReferenceGrant[],
): CertificateResult {
  const ns = ref.namespace ?? namespaceOf(gateway);
  const where = `certificateRef ${ns}/${ref.name}`;
  if (normGroup(ref.group) !== '' || (ref.kind ?? 'Secret') !== 'Secret') {
    return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: unsupported kind ${ref.group || 'core'}/${ref.kind}; only core Secrets are supported` };
  }
  const allowed = isReferenceAllowed({
    from: { group: GATEWAY_GROUP, kind: 'Gateway', namespace: namespaceOf(gateway) },
    to: { group: '', kind: 'Secret', namespace: ns, name: ref.name },
  }, grants);
  if (!allowed) {
    return { ok: false, reason: 'RefNotPermitted', message: `${where}: no ReferenceGrant in ${ns} allows Gateways in ${namespaceOf(gateway)} to refer to this Secret` };
  }
  const secret = secrets.get(`${ns}/${ref.name}`);
  if (!secret) return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: Secret not found` };
  const crt = secretValue(secret, 'tls.crt');
  const key = secretValue(secret, 'tls.key');
  if (!crt || !key) return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: Secret must hold tls.crt and tls.key` };
  try {
    const cert = new X509Certificate(crt);
    const pkey = createPrivateKey(key);
    if (!cert.checkPrivateKey(pkey)) return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: tls.key does not match tls.crt` };
  } catch (e) {
    return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: malformed PEM (${(e as Error).message})` };
  }
  return { ok: true, certChain: crt, privateKey: key };
}

export function secretValue(secret: Secret, key: string): string | null {
  const b64 = secret.data?.[key];
  if (b64 != null) return Buffer.from(b64, 'base64').toString('utf8');
  return secret.stringData?.[key] ?? null;
}
