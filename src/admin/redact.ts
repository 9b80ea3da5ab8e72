// What the admin API shows of secret material: never the material itself.
// A listener's certificate appears as what an operator checks (subject,
// names, expiry, fingerprint); its private key as the SHA-256 of its public
// half, which identifies the key (`openssl pkey -in tls.key -pubout
// -outform DER | sha256sum` prints the same) without revealing it.
//
// Behind that, a safety net over everything the admin API writes: any
// string holding a PEM private key block is replaced, so a field added to
// the IR or a status message later cannot leak one unnoticed.
import crypto from 'node:crypto';
import type { IR, IRListener, TLSCertificate } from '../ir/types.ts';

/** What the config dump shows in place of a TLSCertificate. */
export interface CertificateView {
  serverNames: string[];
  certificate: CertificateSummary | { error: string };
  privateKey: PrivateKeySummary;
}

export interface CertificateSummary {
  subject: string;
  issuer: string;
  /** The subjectAltName extension as openssl prints it: `DNS:a.test, DNS:*.a.test`. */
  subjectAltName: string | null;
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the leaf certificate's DER, colon-separated hex, as `openssl x509 -fingerprint -sha256` prints it. */
  sha256Fingerprint: string;
  /** `sha256:` and the hex SHA-256 of the leaf's SubjectPublicKeyInfo DER. */
  publicKeySha256: string;
  /** Certificates in the chain, leaf included. */
  chainLength: number;
}

export interface PrivateKeySummary {
  redacted: true;
  /** `sha256:` and the hex SHA-256 of the key's public half (SubjectPublicKeyInfo DER); absent when the key does not parse. */
  publicKeySha256?: string;
  /** Whether the key belongs to the leaf certificate; absent when either does not parse. */
  matchesCertificate?: boolean;
  error?: string;
}

export const REDACTED_PRIVATE_KEY = '[redacted: private key]';

/**
 * The marker every PEM private key block carries, whatever its type:
 * `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`,
 * `ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`.
 */
const PRIVATE_KEY_MARK = 'PRIVATE KEY-----';

/** Whether a string (JSON text included: the marker has nothing JSON escapes) may hold a private key. */
export function mayHoldPrivateKey(text: string): boolean {
  return text.includes(PRIVATE_KEY_MARK);
}

/** A JSON.stringify replacer that replaces every string holding a private key. */
export function privateKeyReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'string' && mayHoldPrivateKey(value) ? REDACTED_PRIVATE_KEY : value;
}

/**
 * The IR as the admin API shows it: listeners with TLS get their
 * certificates described; the rest is shared with the IR, not copied.
 */
export function redactedConfig(ir: IR): unknown {
  return { ...ir, listeners: ir.listeners.map(redactedListener) };
}

function redactedListener(listener: IRListener): unknown {
  if (listener.tls === undefined) return listener;
  return { ...listener, tls: { ...listener.tls, certificates: listener.tls.certificates.map(describeCertificate) } };
}

/**
 * Parsing costs a little; IR certificates are kept from one config to the
 * next while unchanged, so each is described once.
 */
const described = new WeakMap<TLSCertificate, CertificateView>();

export function describeCertificate(cert: TLSCertificate): CertificateView {
  let view = described.get(cert);
  if (view === undefined) {
    view = describe(cert);
    described.set(cert, view);
  }
  return view;
}

function describe(cert: TLSCertificate): CertificateView {
  let leaf: crypto.X509Certificate | null = null;
  let certificate: CertificateView['certificate'];
  try {
    leaf = new crypto.X509Certificate(cert.certChain);
    certificate = {
      subject: leaf.subject,
      issuer: leaf.issuer,
      subjectAltName: leaf.subjectAltName ?? null,
      notBefore: new Date(leaf.validFrom).toISOString(),
      notAfter: new Date(leaf.validTo).toISOString(),
      sha256Fingerprint: leaf.fingerprint256,
      publicKeySha256: spkiSha256(leaf.publicKey),
      chainLength: cert.certChain.split('-----BEGIN CERTIFICATE-----').length - 1,
    };
  } catch (e) {
    certificate = { error: `certificate does not parse: ${errorText(e)}` };
  }
  const privateKey: PrivateKeySummary = { redacted: true };
  try {
    const key = crypto.createPrivateKey(cert.privateKey);
    privateKey.publicKeySha256 = spkiSha256(crypto.createPublicKey(key));
    if (leaf !== null) privateKey.matchesCertificate = leaf.checkPrivateKey(key);
  } catch (e) {
    privateKey.error = `private key does not parse: ${errorText(e)}`;
  }
  return { serverNames: cert.serverNames, certificate, privateKey };
}

function spkiSha256(key: crypto.KeyObject): string {
  return `sha256:${crypto.createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex')}`;
}

/** OpenSSL's reason (`error:1E08010C:DECODER routines::unsupported`), never the input; and through the net all the same. */
function errorText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return mayHoldPrivateKey(text) ? REDACTED_PRIVATE_KEY : text;
}
