// Gateway tls.frontend (client certificate validation) through translate():
// default and per-port validations reach the IR socket of their port with
// their CA bundle and mode; bad references give the listener conditions
// the spec names (InvalidCACertificateRef, InvalidCACertificateKind,
// RefNotPermitted; NoValidCACertificate and no socket when none is
// usable); AllowInsecureFallback sets the Gateway's
// InsecureFrontendValidationMode condition.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { KubeObject } from '../../src/api/types.ts';
import { buildSnapshot } from '../../src/api/build-snapshot.ts';
import { parsePool } from '../../src/translate/addresses.ts';
import { translate } from '../../src/translate/index.ts';

/** One key for every certificate here: the server's, the CA and the leaf. */
const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const keyDir = mkdtempSync(join(tmpdir(), 'gatehouse-frontend-'));
const keyFile = join(keyDir, 'key.pem');
writeFileSync(keyFile, key);
process.on('exit', () => rmSync(keyDir, { recursive: true, force: true }));

/** Self-signed, with basicConstraints CA:TRUE or CA:FALSE. */
function selfSigned(ca: boolean): string {
  return execFileSync(
    '/usr/bin/openssl',
    ['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${ca ? 'test-ca' : 'leaf'}`, '-days', '1', '-addext', `basicConstraints=critical,CA:${ca ? 'TRUE' : 'FALSE'}`],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
}

const CA_PEM = selfSigned(true);
const LEAF_PEM = selfSigned(false);
const b64 = (s: string) => Buffer.from(s).toString('base64');
const serverCert = selfSigned(true);

const BASE: KubeObject[] = [
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'gatehouse' }, spec: { controllerName: 'gatehouse.dev/gateway-controller' } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'infra' } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } },
  { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'site', namespace: 'infra' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(serverCert), 'tls.key': b64(key) } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ca', namespace: 'infra' }, data: { 'ca.crt': CA_PEM } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ca', namespace: 'other' }, data: { 'ca.crt': CA_PEM } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'leaf', namespace: 'infra' }, data: { 'ca.crt': LEAF_PEM } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'garbage', namespace: 'infra' }, data: { 'ca.crt': '-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n' } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'nokey', namespace: 'infra' }, data: { 'other.crt': CA_PEM } },
  { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ca-secret', namespace: 'infra' }, data: { 'ca.crt': b64(CA_PEM) } },
] as unknown as KubeObject[];

const ref = (name: string, extra: Record<string, string> = {}) => ({ group: '', kind: 'ConfigMap', name, ...extra });

function gateway(frontend: unknown): KubeObject {
  const https = (name: string, port: number, hostname?: string) => ({
    name, port, protocol: 'HTTPS', ...(hostname ? { hostname } : {}), tls: { certificateRefs: [{ name: 'site' }] },
  });
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'gw', namespace: 'infra', generation: 3 },
    spec: {
      gatewayClassName: 'gatehouse',
      tls: { frontend },
      listeners: [https('https', 443), https('alt', 8443, 'second.example.org'), { name: 'http', port: 80, protocol: 'HTTP' }],
    },
  } as unknown as KubeObject;
}

interface Cond { type: string; status: string; reason: string; message: string; observedGeneration?: number }

function run(frontend: unknown, extra: KubeObject[] = []) {
  const objects = [...BASE, gateway(frontend), ...extra].map((o, i) => ({
    ...o,
    metadata: { generation: 1, creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), ...o.metadata },
  })) as KubeObject[];
  const result = translate(buildSnapshot(objects), {
    controllerName: 'gatehouse.dev/gateway-controller',
    addressing: { pool: parsePool('10.9.0.0/24'), hostAddress: '192.0.2.10', previous: {} },
  });
  const status = result.statuses.get('Gateway|infra|gw') as { conditions: Cond[]; listeners: { name: string; conditions: Cond[] }[] };
  const listener = (name: string) => {
    const l = status.listeners.find((x) => x.name === name);
    assert.ok(l, `listener ${name}`);
    return Object.fromEntries(l.conditions.map((c) => [c.type, c]));
  };
  const socket = (port: number) => result.ir.listeners.find((s) => s.port === port);
  return { result, status, listener, socket, gatewayCondition: (type: string) => status.conditions.find((c) => c.type === type) };
}

test('default validation applies to every HTTPS port, a perPort entry replaces it on its port', () => {
  const { socket, listener, gatewayCondition } = run({
    default: { validation: { caCertificateRefs: [ref('ca')] } },
    perPort: [{ port: 8443, tls: { validation: { mode: 'AllowInsecureFallback', caCertificateRefs: [{ group: '', kind: 'Secret', name: 'ca-secret' }] } } }],
  });
  assert.deepEqual(socket(443)?.tls?.clientValidation, { caCertificates: CA_PEM, mode: 'AllowValidOnly' });
  assert.deepEqual(socket(8443)?.tls?.clientValidation, { caCertificates: CA_PEM, mode: 'AllowInsecureFallback' });
  assert.equal(socket(80)?.tls, undefined);
  for (const name of ['https', 'alt']) {
    assert.equal(listener(name).Accepted.status, 'True');
    assert.equal(listener(name).ResolvedRefs.status, 'True');
    assert.equal(listener(name).Programmed.status, 'True');
  }
  const insecure = gatewayCondition('InsecureFrontendValidationMode');
  assert.equal(insecure?.status, 'True');
  assert.equal(insecure?.reason, 'ConfigurationChanged');
  assert.equal(insecure?.observedGeneration, 3);
});

test('no tls.frontend: no validation and no InsecureFrontendValidationMode condition', () => {
  const { socket, gatewayCondition } = run(undefined);
  assert.equal(socket(443)?.tls?.clientValidation, undefined);
  assert.equal(gatewayCondition('InsecureFrontendValidationMode'), undefined);
  // AllowValidOnly, the default, does not set it either.
  assert.equal(run({ default: { validation: { caCertificateRefs: [ref('ca')] } } }).gatewayCondition('InsecureFrontendValidationMode'), undefined);
});

test('bad references: the reasons the spec names, on the listeners of the port only', () => {
  const cases: [unknown, string, string][] = [
    [ref('missing'), 'InvalidCACertificateRef', 'tls.frontend.default.validation.caCertificateRefs[1] (ConfigMap infra/missing): not found'],
    [ref('nokey'), 'InvalidCACertificateRef', 'has no key ca.crt'],
    [ref('garbage'), 'InvalidCACertificateRef', 'ca.crt certificate 0 is malformed'],
    [ref('leaf'), 'InvalidCACertificateRef', 'is not a CA certificate'],
    [{ group: 'example.com', kind: 'Bundle', name: 'ca' }, 'InvalidCACertificateKind', 'kind example.com/Bundle is not supported'],
    [ref('ca', { namespace: 'other' }), 'RefNotPermitted', 'no ReferenceGrant in other'],
  ];
  for (const [bad, reason, text] of cases) {
    // One bad reference beside a good one: served with the good one, and reported.
    const mixed = run({ default: { validation: { caCertificateRefs: [ref('ca'), bad] } } });
    const refs = mixed.listener('https').ResolvedRefs;
    assert.equal(refs.status, 'False', reason);
    assert.equal(refs.reason, reason);
    assert.ok(refs.message.includes(text), `${refs.message} should include ${text}`);
    assert.equal(mixed.listener('https').Accepted.status, 'True');
    assert.equal(mixed.socket(443)?.tls?.clientValidation?.caCertificates, CA_PEM);

    // Only the bad one: not Accepted, not served; the HTTP listener is untouched.
    const only = run({ default: { validation: { caCertificateRefs: [bad] } } });
    assert.equal(only.listener('https').ResolvedRefs.reason, reason);
    assert.equal(only.listener('https').Accepted.status, 'False');
    assert.equal(only.listener('https').Accepted.reason, 'NoValidCACertificate');
    assert.equal(only.listener('https').Programmed.status, 'False');
    assert.equal(only.socket(443), undefined);
    assert.equal(only.listener('http').Accepted.status, 'True');
    assert.equal(only.listener('http').ResolvedRefs.status, 'True');
    assert.equal(only.listener('http').Programmed.status, 'True');
  }
});

test('a bad default does not touch a port with a good perPort entry; a perPort entry for an HTTP port changes nothing', () => {
  const { listener, socket } = run({
    default: { validation: { caCertificateRefs: [ref('missing')] } },
    perPort: [
      { port: 8443, tls: { validation: { caCertificateRefs: [ref('ca')] } } },
      { port: 80, tls: { validation: { caCertificateRefs: [ref('ca')] } } },
    ],
  });
  assert.equal(listener('https').Accepted.reason, 'NoValidCACertificate');
  assert.equal(listener('alt').Accepted.status, 'True');
  assert.equal(listener('alt').ResolvedRefs.status, 'True');
  assert.equal(socket(8443)?.tls?.clientValidation?.mode, 'AllowValidOnly');
  assert.equal(socket(80)?.tls, undefined);
});

test('a ReferenceGrant allows a CA in another namespace', () => {
  const grant = {
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    kind: 'ReferenceGrant',
    metadata: { name: 'ca', namespace: 'other' },
    spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'infra' }], to: [{ group: '', kind: 'ConfigMap' }] },
  } as unknown as KubeObject;
  const { listener, socket } = run({ default: { validation: { caCertificateRefs: [ref('ca', { namespace: 'other' })] } } }, [grant]);
  assert.equal(listener('https').ResolvedRefs.status, 'True');
  assert.equal(socket(443)?.tls?.clientValidation?.caCertificates, CA_PEM);
});
