// The config service's TLS identity, shared by every controller replica: a
// CA and a serving certificate it signed, kept in one Secret in the
// controller's namespace. Whichever replica starts first creates it; the
// others read it (a create answered 409 means another replica won the
// race: read theirs). The proxies trust the CA (its `ca.crt`), so the
// serving certificate can be reissued, for a new name or before it
// expires, without touching a proxy.
//
// Checked at every controller start: a serving certificate that lacks a
// name asked for, or has less than RENEW_BEFORE_MS left, is reissued from
// the same CA (the names it already had are kept, so replicas asking for
// different extra names converge instead of taking turns); a CA that is
// unreadable or has less than RENEW_BEFORE_MS left is replaced with a new
// one, and the proxies must then be given its `ca.crt`.
import crypto from 'node:crypto';
import { ApiException, CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { LogFn } from '../../dataplane/log.ts';
import { createCertificateAuthority, issueServingCertificate, type IssuedCertificate } from './certificate-authority.ts';

const YEAR_MS = 365 * 24 * 60 * 60 * 1000;
/** The CA lives long: replacing it means handing every proxy a new CA file. */
export const CA_VALIDITY_MS = 10 * YEAR_MS;
export const SERVING_VALIDITY_MS = 5 * YEAR_MS;
/** Reissued at a start with less than this left. */
export const RENEW_BEFORE_MS = 1 * YEAR_MS;
/** Rounds of read, then create or replace, before giving up: each lost race costs one. */
const MAX_ATTEMPTS = 5;

export const SECRET_KEYS = { caCert: 'ca.crt', caKey: 'ca.key', cert: 'tls.crt', key: 'tls.key' } as const;

export interface ConfigCertificateOptions {
  kubeConfig: KubeConfig;
  /** The controller's namespace: where the Secret lives and the Service is. */
  namespace: string;
  secretName: string;
  /** The controller's Service, through which proxies reach the config service. */
  serviceName: string;
  /** Further DNS names the certificate must hold. */
  extraDnsNames?: readonly string[];
  /** IP addresses the certificate must hold (tests connect to 127.0.0.1). */
  ipAddresses?: readonly string[];
  log: LogFn;
  /** For tests. */
  now?: () => number;
}

export interface ConfigCertificate {
  /** PEM: what the proxies verify the controller with. */
  caCert: string;
  /** PEM: the serving certificate and its key. */
  cert: string;
  key: string;
}

/** The DNS names a Service is reached by from inside the cluster. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
}

export async function ensureConfigServiceCertificate(opts: ConfigCertificateOptions): Promise<ConfigCertificate> {
  const api = opts.kubeConfig.makeApiClient(CoreV1Api);
  const now = opts.now ?? Date.now;
  const where = `Secret ${opts.namespace}/${opts.secretName}`;
  const dnsNames = [...new Set([...serviceDnsNames(opts.serviceName, opts.namespace), ...(opts.extraDnsNames ?? [])])];
  const ipAddresses = [...new Set(opts.ipAddresses ?? [])];

  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const secret = await readSecret(api, opts.namespace, opts.secretName, where);
    if (secret === null) {
      const ca = createCertificateAuthority(`gatehouse config CA ${opts.namespace}`, CA_VALIDITY_MS, now());
      const serving = issue(ca, opts.serviceName, dnsNames, ipAddresses, now());
      try {
        await api.createNamespacedSecret({ namespace: opts.namespace, body: secretBody(opts, ca, serving) });
        opts.log('info', 'config service certificate created', { secret: where, dnsNames, ipAddresses });
        return { caCert: ca.cert, ...serving };
      } catch (err) {
        if (isStatus(err, 409)) continue; // another replica created it first: use theirs
        throw new Error(`${where}: cannot create: ${describe(err)}`);
      }
    }

    const held = readHeld(secret);
    const ca = held.ca !== null && usableUntil(held.ca, now()) ? held.ca : null;
    if (ca !== null && held.serving !== null && servingFits(held.serving, ca, dnsNames, ipAddresses, now())) {
      return { caCert: ca.cert, ...held.serving };
    }
    // Reissue: from the same CA when it is good, keeping the names the certificate had.
    const newCa = ca ?? createCertificateAuthority(`gatehouse config CA ${opts.namespace}`, CA_VALIDITY_MS, now());
    const kept = held.serving !== null && ca !== null ? namesOf(held.serving.cert) : { dns: [], ip: [] };
    const allDns = [...new Set([...dnsNames, ...kept.dns])];
    const allIp = [...new Set([...ipAddresses, ...kept.ip])];
    const serving = issue(newCa, opts.serviceName, allDns, allIp, now());
    const body = secretBody(opts, newCa, serving);
    // With the resourceVersion read: a replica that wrote meanwhile makes this a 409, not a lost update.
    body.metadata = {
      ...body.metadata,
      resourceVersion: secret.metadata?.resourceVersion,
      labels: { ...secret.metadata?.labels, ...body.metadata?.labels },
      annotations: secret.metadata?.annotations,
    };
    try {
      await api.replaceNamespacedSecret({ name: opts.secretName, namespace: opts.namespace, body });
      opts.log(ca === null ? 'warn' : 'info', ca === null ? 'config service CA replaced: proxies must be given the new ca.crt' : 'config service certificate reissued', {
        secret: where, dnsNames: allDns, ipAddresses: allIp, reason: held.problem ?? 'names missing or expiring',
      });
      return { caCert: newCa.cert, ...serving };
    } catch (err) {
      if (isStatus(err, 409)) continue; // changed meanwhile by another replica: look again
      throw new Error(`${where}: cannot replace: ${describe(err)}`);
    }
  }
  throw new Error(`${where}: still contended after ${MAX_ATTEMPTS} rounds of read and write; another writer keeps changing it`);
}

function issue(ca: IssuedCertificate, service: string, dnsNames: string[], ipAddresses: string[], now: number): IssuedCertificate {
  return issueServingCertificate(ca, { commonName: service, dnsNames, ipAddresses, validForMs: SERVING_VALIDITY_MS }, now);
}

async function readSecret(api: CoreV1Api, namespace: string, name: string, where: string): Promise<V1Secret | null> {
  try {
    return await api.readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (isStatus(err, 404)) return null;
    throw new Error(`${where}: cannot read: ${describe(err)}`);
  }
}

function secretBody(opts: ConfigCertificateOptions, ca: IssuedCertificate, serving: IssuedCertificate): V1Secret {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: { name: opts.secretName, namespace: opts.namespace, labels: { 'app.kubernetes.io/managed-by': 'gatehouse' } },
    data: {
      [SECRET_KEYS.caCert]: b64(ca.cert),
      [SECRET_KEYS.caKey]: b64(ca.key),
      [SECRET_KEYS.cert]: b64(serving.cert),
      [SECRET_KEYS.key]: b64(serving.key),
    },
  };
}

/** What the Secret holds that can be used; `problem` says (without any key material) what could not. */
function readHeld(secret: V1Secret): { ca: IssuedCertificate | null; serving: IssuedCertificate | null; problem: string | null } {
  const field = (k: string) => (secret.data?.[k] === undefined ? null : Buffer.from(secret.data[k]!, 'base64').toString('utf8'));
  const pair = (certKey: string, keyKey: string, what: string): IssuedCertificate | string => {
    const cert = field(certKey);
    const key = field(keyKey);
    if (cert === null || key === null) return `${what}: ${certKey} or ${keyKey} missing`;
    try {
      if (!new crypto.X509Certificate(cert).checkPrivateKey(crypto.createPrivateKey(key))) return `${what}: ${keyKey} does not match ${certKey}`;
    } catch (e) {
      return `${what}: unreadable: ${(e as Error).message}`;
    }
    return { cert, key };
  };
  const ca = pair(SECRET_KEYS.caCert, SECRET_KEYS.caKey, 'CA');
  const serving = pair(SECRET_KEYS.cert, SECRET_KEYS.key, 'serving certificate');
  const problems = [ca, serving].filter((p): p is string => typeof p === 'string');
  return {
    ca: typeof ca === 'string' ? null : ca,
    serving: typeof serving === 'string' ? null : serving,
    problem: problems.length === 0 ? null : problems.join('; '),
  };
}

function usableUntil(held: IssuedCertificate, now: number): boolean {
  const cert = new crypto.X509Certificate(held.cert);
  return cert.ca && Date.parse(cert.validTo) - now > RENEW_BEFORE_MS && Date.parse(cert.validFrom) <= now;
}

function servingFits(serving: IssuedCertificate, ca: IssuedCertificate, dnsNames: string[], ipAddresses: string[], now: number): boolean {
  const cert = new crypto.X509Certificate(serving.cert);
  const caCert = new crypto.X509Certificate(ca.cert);
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return false;
  if (Date.parse(cert.validTo) - now <= RENEW_BEFORE_MS || Date.parse(cert.validFrom) > now) return false;
  const names = namesOf(serving.cert);
  return dnsNames.every((n) => names.dns.includes(n)) && ipAddresses.every((a) => names.ip.includes(canonicalIp(a)));
}

/** The DNS names and IP addresses (canonical text) a certificate is for. */
function namesOf(pem: string): { dns: string[]; ip: string[] } {
  const dns: string[] = [];
  const ip: string[] = [];
  for (const entry of (new crypto.X509Certificate(pem).subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) dns.push(entry.slice(4));
    else if (entry.startsWith('IP Address:')) ip.push(canonicalIp(entry.slice(11)));
  }
  return { dns, ip };
}

/** One spelling per address: node writes IPv6 SANs in full, users write them short. */
function canonicalIp(address: string): string {
  return address.includes(':') ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

function describe(err: unknown): string {
  if (err instanceof ApiException) return `HTTP ${err.code}: ${String(err.message).split('\n')[0]}`;
  return (err as Error)?.message ?? String(err);
}
