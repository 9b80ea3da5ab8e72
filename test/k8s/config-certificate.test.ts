// The config service's TLS identity in a Secret, against a real API
// server: made once and shared by every replica (two starting at once end
// up with one CA), reissued from the same CA for a new name or an expiry
// near, replaced when unreadable; and what it makes passes a real TLS
// handshake by the Service's DNS name.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import * as k8s from '@kubernetes/client-node';
import { ensureConfigServiceCertificate, SECRET_KEYS, serviceDnsNames, type ConfigCertificateOptions } from '../../src/providers/kubernetes/config-certificate.ts';
import { recordingLog } from '../proxy/helpers.ts';
import { startCluster, type Cluster } from './harness/cluster.ts';

const NS = 'gatehouse-system';
const YEAR_MS = 365 * 24 * 60 * 60 * 1000;

let cluster: Cluster;
let core: k8s.CoreV1Api;

before(async () => {
  cluster = await startCluster({ crds: 'none', gatehouseCrds: false });
  core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: NS } } });
});

after(async () => {
  await cluster?.stop();
});

function options(secretName: string, extra: Partial<ConfigCertificateOptions> = {}) {
  const logs = recordingLog();
  return { logs, opts: { kubeConfig: cluster.kubeConfig(), namespace: NS, secretName, serviceName: 'gatehouse', log: logs.log, ...extra } };
}

function sans(pem: string): string[] {
  return (new crypto.X509Certificate(pem).subjectAltName ?? '').split(', ').sort();
}

function chains(cert: string, ca: string): boolean {
  const c = new crypto.X509Certificate(cert);
  const a = new crypto.X509Certificate(ca);
  return c.checkIssued(a) && c.verify(a.publicKey);
}

test('made once, then read back as it is; the Secret holds the CA and the serving pair, the log no key', async () => {
  const { opts, logs } = options('made-once', { ipAddresses: ['127.0.0.1'] });
  const first = await ensureConfigServiceCertificate(opts);
  assert.ok(chains(first.cert, first.caCert));
  assert.deepEqual(sans(first.cert), [...serviceDnsNames('gatehouse', NS).map((n) => `DNS:${n}`), 'IP Address:127.0.0.1'].sort());
  const secret = await core.readNamespacedSecret({ name: 'made-once', namespace: NS });
  assert.deepEqual(Object.keys(secret.data ?? {}).sort(), Object.values(SECRET_KEYS).sort());
  assert.equal(Buffer.from(secret.data![SECRET_KEYS.caCert]!, 'base64').toString(), first.caCert);
  assert.equal(secret.metadata?.labels?.['app.kubernetes.io/managed-by'], 'gatehouse');

  const again = await ensureConfigServiceCertificate(options('made-once', { ipAddresses: ['127.0.0.1'] }).opts);
  assert.deepEqual(again, first);
  assert.match(logs.text(), /config service certificate created/);
  assert.doesNotMatch(logs.text(), /PRIVATE KEY|BEGIN/);
});

test('two replicas starting at once share one CA', async () => {
  const [a, b] = await Promise.all([
    ensureConfigServiceCertificate(options('race', { extraDnsNames: ['replica-a.test'] }).opts),
    ensureConfigServiceCertificate(options('race', { extraDnsNames: ['replica-b.test'] }).opts),
  ]);
  assert.equal(a.caCert, b.caCert);
  assert.ok(chains(a.cert, b.caCert) && chains(b.cert, a.caCert));
  // Each start after that finds a certificate with both names: the replicas converge instead of taking turns.
  const c = await ensureConfigServiceCertificate(options('race', { extraDnsNames: ['replica-a.test'] }).opts);
  const d = await ensureConfigServiceCertificate(options('race', { extraDnsNames: ['replica-b.test'] }).opts);
  assert.equal(c.cert, d.cert);
  assert.ok(sans(c.cert).includes('DNS:replica-a.test') && sans(c.cert).includes('DNS:replica-b.test'));
});

test('a new name or an expiry within a year: reissued from the same CA, the old names kept', async () => {
  const first = await ensureConfigServiceCertificate(options('renew', { ipAddresses: ['127.0.0.1'] }).opts);
  const { opts, logs } = options('renew', { ipAddresses: ['::1'] });
  const named = await ensureConfigServiceCertificate(opts);
  assert.equal(named.caCert, first.caCert);
  assert.notEqual(named.cert, first.cert);
  assert.ok(sans(named.cert).includes('IP Address:127.0.0.1') && sans(named.cert).includes('IP Address:0:0:0:0:0:0:0:1'));
  assert.match(logs.text(), /certificate reissued/);

  // Four and a half years on, the serving certificate (five years) has half a year left.
  const later = Date.now() + 4.5 * YEAR_MS;
  const renewed = await ensureConfigServiceCertificate(options('renew', { ipAddresses: ['::1'], now: () => later }).opts);
  assert.equal(renewed.caCert, first.caCert);
  assert.ok(Date.parse(new crypto.X509Certificate(renewed.cert).validTo) > later + 4 * YEAR_MS);
});

test('an unreadable Secret: a new CA, and a warning that the proxies need its ca.crt', async () => {
  await core.createNamespacedSecret({
    namespace: NS,
    body: { metadata: { name: 'garbage' }, stringData: { [SECRET_KEYS.caCert]: 'not a certificate', [SECRET_KEYS.caKey]: 'nor a key' } },
  });
  const { opts, logs } = options('garbage');
  const made = await ensureConfigServiceCertificate(opts);
  assert.ok(chains(made.cert, made.caCert));
  assert.match(logs.text(), /CA replaced: proxies must be given the new ca.crt/);
  assert.doesNotMatch(logs.text(), /BEGIN/);
  const stored = await core.readNamespacedSecret({ name: 'garbage', namespace: NS });
  assert.equal(Buffer.from(stored.data![SECRET_KEYS.caCert]!, 'base64').toString(), made.caCert);
});

test('what it makes passes a TLS handshake by the Service name, for a client trusting the CA', async (t) => {
  const made = await ensureConfigServiceCertificate(options('handshake').opts);
  const server = tls.createServer({ cert: made.cert, key: made.key }, (s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const outcome = (servername: string) => new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: made.caCert });
    s.once('secureConnect', () => { s.destroy(); resolve('ok'); });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.equal(await outcome(`gatehouse.${NS}.svc`), 'ok');
  assert.equal(await outcome(`gatehouse.${NS}.svc.cluster.local`), 'ok');
  assert.equal(await outcome('gatehouse.other.svc'), 'ERR_TLS_CERT_ALTNAME_INVALID');
});
