// TLS to backends (BackendTLSPolicy): the options every connection of one
// endpoint's pool opens with, made once per pool. The secure context (CA
// bundle, client certificate) is built once and shared by the pool's
// connections, so a handshake does not parse PEM again.
//
// Name checks follow GEP-1897: the SNI is the policy's hostname; without
// subjectAltNames the certificate must be valid for that hostname; with
// them, for any one of them (Hostname: a DNS SAN, wildcards as RFC 6125;
// URI: a URI SAN, compared exactly) and the hostname is not checked.

import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import type { UpstreamTLS } from '../../ir/types.ts';

/** Options for tls.connect(), without host and port. */
export type UpstreamTLSOptions = tls.ConnectionOptions;

export function upstreamTLSOptions(spec: UpstreamTLS): UpstreamTLSOptions {
  // Throws (bad PEM) before any connection: the config compiler reports it.
  // OpenSSL skips what is not PEM in a CA bundle without a word, so an
  // empty bundle is refused here rather than trust nothing silently.
  if (spec.caCertificates !== undefined && caCount(spec.caCertificates) === 0) throw new Error('the CA bundle holds no certificate');
  const secureContext = tls.createSecureContext({
    ca: spec.caCertificates,
    cert: spec.clientCertificate?.certChain,
    key: spec.clientCertificate?.privateKey,
  });
  const sans = spec.subjectAltNames;
  return {
    secureContext,
    servername: spec.serverName,
    // The lean client speaks HTTP/1.1 only on these connections.
    ALPNProtocols: ['http/1.1'],
    rejectUnauthorized: true,
    checkServerIdentity: sans.length === 0
      ? (_host: string, cert: PeerCertificate) => tls.checkServerIdentity(spec.serverName, cert)
      : (_host: string, cert: PeerCertificate) => checkSubjectAltNames(sans, cert),
  };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** Certificates in a PEM bundle that parse. */
export function caCount(pem: string): number {
  let n = 0;
  for (const m of pem.matchAll(PEM_CERT)) {
    try { new X509Certificate(m[0]); n++; } catch { /* not a certificate */ }
  }
  return n;
}

/** undefined when `cert` carries one of `sans`, else the error the handshake fails with. */
export function checkSubjectAltNames(sans: UpstreamTLS['subjectAltNames'], cert: PeerCertificate): Error | undefined {
  const dns: string[] = [];
  const uris: string[] = [];
  for (const part of splitAltNames(cert.subjectaltname ?? '')) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4).toLowerCase());
    else if (part.startsWith('URI:')) uris.push(part.slice(4));
  }
  for (const san of sans) {
    // A wildcard may be on either side: the certificate's (`*.example.com` covers abc.example.com) or the policy's.
    const want = san.value.toLowerCase();
    if (san.type === 'URI' ? uris.includes(san.value) : dns.some((d) => dnsMatches(d, want) || dnsMatches(want, d))) return undefined;
  }
  const err = new Error(`the backend's certificate has none of the subjectAltNames asked for (${sans.map((s) => `${s.type} ${s.value}`).join(', ')})`) as NodeJS.ErrnoException;
  err.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  return err;
}

/**
 * node's subjectaltname string: `DNS:a, URI:b`; values with a comma or a
 * quote are written as JSON strings (`URI:"a,b"`), since node 17.
 */
function splitAltNames(text: string): string[] {
  const out: string[] = [];
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = re.exec(text); m !== null && m[0] !== ''; m = re.exec(text)) {
    let value = m[2];
    if (value.startsWith('"')) {
      try { value = JSON.parse(value) as string; } catch { continue; }
    }
    out.push(`${m[1]}:${value}`);
  }
  return out;
}

/** A certificate's DNS name (`*.example.com` allowed, leftmost label only) against a wanted name. */
function dnsMatches(certName: string, wanted: string): boolean {
  if (certName === wanted) return true;
  if (!certName.startsWith('*.')) return false;
  const dot = wanted.indexOf('.');
  return dot > 0 && wanted.slice(dot) === certName.slice(1);
}
