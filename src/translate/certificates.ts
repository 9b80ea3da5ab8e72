// Listener certificateRefs: resolve a reference to a Secret of type
// kubernetes.io/tls and check its PEM before any of it reaches a socket.
//
// A Secret whose content goes bad (malformed PEM, tls.crt or tls.key
// missing, a key that does not match the certificate) does not take its
// listener down: the last good content of that Secret keeps serving and
// the listener's status says what is wrong. Last good certificates are
// kept by Secret (namespace/name), not by listener: what was good is the
// Secret's content, every listener that uses the Secret may fall back to
// it, and there is one entry per Secret in use. The fallback is taken only
// after the reference is checked again (kind, ReferenceGrant, the Secret
// exists), so a deleted Secret or a withdrawn grant stops serving at once:
// the owner revoked access. Expiry is not checked: an expired certificate
// is served, and clients decide (as Envoy and nginx do).
//
// Messages never carry key material: errors from parsing are reduced to
// OpenSSL's reason (`error:...:PEM routines::no start line`) or a code.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KubeObject, Secret, SecretObjectReference, ReferenceGrant } from '../api/types.ts';
import { GATEWAY_GROUP } from '../api/types.ts';
import { namespaceOf } from '../api/snapshot.ts';
import { isReferenceAllowed, normGroup } from './referencegrant.ts';

/** A certificate and key that were checked and found to match. */
export interface GoodCertificate {
  certChain: string;
  privateKey: string;
  /** SHA-256 of the leaf certificate, colon-separated hex: how messages name it. */
  fingerprint: string;
  /** The leaf's notAfter, ISO 8601. */
  notAfter: string;
}

/** Secret `namespace/name` -> its last good content. */
export type LastGoodCertificates = Record<string, GoodCertificate>;

export type CertificateResult =
  | { ok: true; secret: string; certificate: GoodCertificate }
  | {
    ok: false; reason: 'InvalidCertificateRef' | 'RefNotPermitted'; message: string;
    /** Set when the Secret is readable but its content is bad: its last good content may stand in. */
    badContentOf?: string;
  };

/**
 * `from` is the object the reference is written in: a Gateway, or a
 * ListenerSet, whose own namespace needs no grant and whose grants are
 * its own (a Gateway's do not extend to its ListenerSets, nor theirs to it).
 */
export function resolveCertificateRef(
  from: KubeObject, ref: SecretObjectReference, secrets: Map<string, Secret>, grants: ReferenceGrant[],
): CertificateResult {
  const ns = ref.namespace ?? namespaceOf(from);
  const where = `certificateRef ${ns}/${ref.name}`;
  if (normGroup(ref.group) !== '' || (ref.kind ?? 'Secret') !== 'Secret') {
    return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: unsupported kind ${ref.group || 'core'}/${ref.kind}; only core Secrets are supported` };
  }
  const allowed = isReferenceAllowed({
    from: { group: groupOf(from.apiVersion), kind: from.kind, namespace: namespaceOf(from) },
    to: { group: '', kind: 'Secret', namespace: ns, name: ref.name },
  }, grants);
  if (!allowed) {
    return { ok: false, reason: 'RefNotPermitted', message: `${where}: no ReferenceGrant in ${ns} allows ${from.kind}s in ${namespaceOf(from)} to refer to this Secret` };
  }
  const key = `${ns}/${ref.name}`;
  const secret = secrets.get(key);
  if (!secret) return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: Secret not found` };
  const checked = checkedPairOf(secret);
  if (typeof checked === 'string') return { ok: false, reason: 'InvalidCertificateRef', message: `${where}: ${checked}`, badContentOf: key };
  return { ok: true, secret: key, certificate: checked };
}

/**
 * Objects are not changed once read (a provider hands out a new object for
 * new content), so a Secret's pair is parsed and checked once, not on
 * every translation: with dozens of HTTPS listeners that was a few hundred
 * microseconds each per reload. The check reads no clock, so its answer
 * cannot go stale.
 */
const checkedPairs = new WeakMap<Secret, GoodCertificate | string>();

function checkedPairOf(secret: Secret): GoodCertificate | string {
  let checked = checkedPairs.get(secret);
  if (checked === undefined) {
    checked = checkPair(secretValue(secret, 'tls.crt'), secretValue(secret, 'tls.key'));
    checkedPairs.set(secret, checked);
  }
  return checked;
}

/** The pair, checked; or what is wrong with it. */
function checkPair(crt: string | null, key: string | null): GoodCertificate | string {
  if (!crt || !key) return `Secret must hold tls.crt and tls.key (missing: ${[!crt && 'tls.crt', !key && 'tls.key'].filter(Boolean).join(', ')})`;
  // Every certificate of the chain is parsed: a bad intermediate would fail in the data plane instead.
  const blocks = crt.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) return 'tls.crt is not a PEM certificate (no BEGIN CERTIFICATE block)';
  let leaf: X509Certificate | undefined;
  for (const [i, block] of blocks.entries()) {
    try {
      const cert = new X509Certificate(block);
      leaf ??= cert;
    } catch (e) {
      return `tls.crt certificate ${i} is malformed (${safeReason(e)})`;
    }
  }
  let matches: boolean;
  try {
    matches = leaf!.checkPrivateKey(createPrivateKey(key));
  } catch (e) {
    return `tls.key is not a usable PEM private key (${safeReason(e)})`;
  }
  if (!matches) return 'tls.key does not match tls.crt';
  return { certChain: crt, privateKey: key, fingerprint: leaf!.fingerprint256, notAfter: new Date(leaf!.validTo).toISOString() };
}

/** How a kept certificate is named in a status message: never its key. */
export function describeCertificate(c: GoodCertificate): string {
  return `SHA-256 ${c.fingerprint}, notAfter ${c.notAfter}`;
}

/**
 * OpenSSL's reason, or the error code. Some of node's errors quote the
 * value they were given, and that value can be a private key.
 */
function safeReason(e: unknown): string {
  const { message, code } = (e ?? {}) as { message?: unknown; code?: unknown };
  if (typeof message === 'string' && /^error:[0-9A-F]{8}:[^\n]{0,160}$/.test(message)) return message;
  return typeof code === 'string' ? code : 'unreadable';
}

export function secretValue(secret: Secret, key: string): string | null {
  const b64 = secret.data?.[key];
  if (b64 != null) return Buffer.from(b64, 'base64').toString('utf8');
  return secret.stringData?.[key] ?? null;
}

/** The API group of an apiVersion (`group/version`), the Gateway API's when it is missing. */
function groupOf(apiVersion: string | undefined): string {
  const slash = apiVersion?.indexOf('/') ?? -1;
  return slash > 0 ? apiVersion!.slice(0, slash) : GATEWAY_GROUP;
}
