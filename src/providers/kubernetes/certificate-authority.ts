// A small certificate authority for the config service: one self-signed CA
// and the serving certificates it signs, ECDSA P-256 with SHA-256, written
// as DER by hand. node:crypto makes keys and signatures but not X.509
// certificates, and the proxy image should not need an openssl binary at
// run time for the controller to start; the few structures needed here
// (RFC 5280: a TBSCertificate with names, validity, key and a handful of
// extensions) are simple enough to encode directly, and every certificate
// made is checked by node's own X509Certificate in the tests and in use by
// real TLS handshakes.
import crypto, { type KeyObject } from 'node:crypto';
import net from 'node:net';

export interface IssuedCertificate {
  /** PEM. */
  cert: string;
  /** PEM, PKCS#8. */
  key: string;
}

export interface ServingCertificateRequest {
  /** The subject's common name, for people reading it; clients check the SANs. */
  commonName: string;
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  /** How long it is valid from now. */
  validForMs: number;
}

/** Clocks of the pods that check a certificate may be a little behind the one that made it. */
const BACKDATE_MS = 60 * 60 * 1000;

/** A self-signed CA certificate that may sign serving certificates (and nothing below them). */
export function createCertificateAuthority(commonName: string, validForMs: number, now = Date.now()): IssuedCertificate {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const name = distinguishedName(commonName);
  const keyId = keyIdentifier(publicKey);
  const extensions = [
    extension(OID.basicConstraints, true, seq(bool(true), int(Buffer.from([0])))),
    extension(OID.keyUsage, true, bitString(Buffer.from([0x86]), 1)), // digitalSignature, keyCertSign, cRLSign
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
  ];
  const cert = sign(tbsCertificate(name, name, publicKey, now, validForMs, extensions), privateKey);
  return { cert: pem('CERTIFICATE', cert), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** A TLS server certificate for `request`'s names, signed by `ca`. */
export function issueServingCertificate(ca: IssuedCertificate, request: ServingCertificateRequest, now = Date.now()): IssuedCertificate {
  const caCert = new crypto.X509Certificate(ca.cert);
  const caKey = crypto.createPrivateKey(ca.key);
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const sans: Buffer[] = [
    ...request.dnsNames.map((n) => tlv(0x82, Buffer.from(n, 'ascii'))),
    ...request.ipAddresses.map((a) => tlv(0x87, ipBytes(a))),
  ];
  if (sans.length === 0) throw new Error('a serving certificate needs at least one DNS name or IP address');
  const extensions = [
    extension(OID.basicConstraints, true, seq()),
    extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7)), // digitalSignature
    extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
    extension(OID.subjectAltName, false, seq(...sans)),
    extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(publicKey))),
    extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, keyIdentifier(caCert.publicKey)))),
  ];
  // The issuer is the CA's subject, byte for byte, as chain building compares it.
  const issuer = subjectOf(caCert);
  const tbs = tbsCertificate(issuer, distinguishedName(request.commonName), publicKey, now, request.validForMs, extensions);
  return { cert: pem('CERTIFICATE', sign(tbs, caKey)), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

// ---- RFC 5280 structures --------------------------------------------------

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

function tbsCertificate(issuer: Buffer, subject: Buffer, publicKey: KeyObject, now: number, validForMs: number, extensions: Buffer[]): Buffer {
  return seq(
    tlv(0xa0, int(Buffer.from([2]))), // v3
    int(serialNumber()),
    seq(oid(OID.ecdsaWithSHA256)),
    issuer,
    seq(time(new Date(now - BACKDATE_MS)), time(new Date(now + validForMs))),
    subject,
    publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, seq(...extensions)),
  );
}

function sign(tbs: Buffer, key: KeyObject): Buffer {
  // node gives ECDSA signatures DER-encoded (Ecdsa-Sig-Value), as X.509 wants them.
  const signature = crypto.sign('sha256', tbs, key);
  return seq(tbs, seq(oid(OID.ecdsaWithSHA256)), bitString(signature, 0));
}

function distinguishedName(commonName: string): Buffer {
  return seq(set(seq(oid(OID.commonName), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
}

/** The subject Name of a certificate, as DER, read from its TBSCertificate. */
function subjectOf(cert: crypto.X509Certificate): Buffer {
  const tbs = children(cert.raw)[0]!; // Certificate: tbsCertificate, signatureAlgorithm, signature
  // version [0], serialNumber, signature, issuer, validity, subject
  return children(tbs)[5]!;
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** RFC 5280 4.2.1.2, method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const bits = children(spki)[1]!; // SubjectPublicKeyInfo: algorithm, subjectPublicKey
  return crypto.createHash('sha1').update(contentOf(bits).subarray(1)).digest();
}

/** 16 random bytes, positive and without a leading zero byte (RFC 5280: at most 20 octets). */
function serialNumber(): Buffer {
  const serial = crypto.randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  return serial;
}

function ipBytes(address: string): Buffer {
  const family = net.isIP(address);
  if (family === 4) return Buffer.from(address.split('.').map(Number));
  if (family === 6) {
    const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
    const groups = (s: string | undefined) => (s ? s.split(':') : []);
    const missing = 8 - groups(head).length - groups(tail).length;
    const all = tail === undefined ? groups(head) : [...groups(head), ...Array<string>(missing).fill('0'), ...groups(tail)];
    return Buffer.from(all.flatMap((g) => { const v = parseInt(g, 16); return [v >> 8, v & 0xff]; }));
  }
  throw new Error(`not an IP address: ${JSON.stringify(address)}`);
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// ---- DER ------------------------------------------------------------------

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let length: Buffer;
  if (n < 0x80) length = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    length = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), length, content]);
}

function seq(...items: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(items));
}

function set(...items: Buffer[]): Buffer {
  return tlv(0x31, Buffer.concat(items));
}

function bool(value: boolean): Buffer {
  return tlv(0x01, Buffer.from([value ? 0xff : 0]));
}

/** A non-negative INTEGER from its big-endian bytes. */
function int(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && bytes[start + 1]! < 0x80) start++;
  const minimal = bytes.subarray(start);
  return tlv(0x02, minimal[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), minimal]) : minimal);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const bytes = [a! * 40 + b!];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function octetString(content: Buffer): Buffer {
  return tlv(0x04, content);
}

function bitString(content: Buffer, unusedBits: number): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), content]));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString(); // 2025-01-31T12:34:56.789Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${digits}Z`));
}

/** The elements of a constructed DER value (a SEQUENCE, say), each with its tag and length. */
function children(der: Buffer): Buffer[] {
  const content = contentOf(der);
  const out: Buffer[] = [];
  for (let i = 0; i < content.length;) {
    const { headerLength, length } = header(content, i);
    out.push(content.subarray(i, i + headerLength + length));
    i += headerLength + length;
  }
  return out;
}

function contentOf(der: Buffer): Buffer {
  const { headerLength, length } = header(der, 0);
  return der.subarray(headerLength, headerLength + length);
}

function header(der: Buffer, at: number): { headerLength: number; length: number } {
  const first = der[at + 1]!;
  if (first < 0x80) return { headerLength: 2, length: first };
  const count = first & 0x7f;
  let length = 0;
  for (let i = 0; i < count; i++) length = length * 256 + der[at + 2 + i]!;
  return { headerLength: 2 + count, length };
}
