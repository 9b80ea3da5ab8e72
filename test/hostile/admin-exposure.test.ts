// The admin API as an attacker meets it: it must serve no secret, answer
// no other site's page and no name but its own, ask for a token beyond
// loopback, and keep its memory bounded however it is asked for listings.
// Real processes, real sockets, real certificates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { GATEWAY_CLASS, freePort, tempConfigDir, waitFor, writeConfig } from '../e2e/helpers.ts';
import { startAdminServer, type AdminServerOptions } from '../../src/admin/server.ts';
import { isLoopbackAddress } from '../../src/admin/access.ts';
import { readAdminTokenFile } from '../../src/admin/token.ts';
import type { IR } from '../../src/ir/types.ts';
import { allResources, b64, exitWithin, makeTlsMaterial, rawRequest, secretFragments, spawnGatehouse, untilReady } from './admin-fixtures.ts';

const TOKEN = 'a'.repeat(8) + crypto.randomBytes(24).toString('hex');

async function admin(t: import('node:test').TestContext, over: Partial<AdminServerOptions> = {}) {
  const server = await startAdminServer({
    address: '127.0.0.1:0',
    resources: () => [],
    errors: () => [],
    config: () => ({ version: 1, listeners: [], clusters: {} }),
    ready: () => true,
    ...over,
  });
  t.after(() => server.close());
  return server;
}

test('no admin answer, nor the log, holds a private key or Secret data; the config shows fingerprints instead', { timeout: 30_000 }, async (t) => {
  const dir = tempConfigDir();
  const material = makeTlsMaterial(os.tmpdir(), `gh-admin-${process.pid}.test`);
  const password = crypto.randomBytes(30).toString('base64');
  const configMapSecretish = crypto.randomBytes(30).toString('hex');
  const port = await freePort();
  writeConfig(dir, 'gateway.yaml', `${GATEWAY_CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: https, port: ${port}, protocol: HTTPS, tls: {mode: Terminate, certificateRefs: [{name: site-tls}]}}
`);
  writeConfig(dir, 'secrets.yaml', `apiVersion: v1
kind: Secret
metadata: {name: site-tls, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64(material.certPem)}, tls.key: ${b64(material.keyPem)}}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: default}
data: {password: ${b64(password)}}
stringData: {other: ${JSON.stringify(password)}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {value: ${configMapSecretish}}
`);
  // A Secret that fails validation: reported on /api/v1/errors, by field, not by value.
  writeConfig(dir, 'bad-secret.yaml', `apiVersion: v1
kind: Secret
metadata: {name: broken, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64(material.certPem)}, tls.key: "${b64(material.keyPem).slice(0, 200)}!!"}
`);
  const adminPort = await freePort();
  const serve = spawnGatehouse(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--address-pool', '127.88.0.0/24',
    '--workers', '1', '--log-level', 'debug']);
  t.after(() => serve.kill());
  await untilReady(serve, adminPort);

  const answers = new Map<string, string>();
  for (const p of ['/healthz', '/readyz', '/api/v1/config', '/api/v1/errors', '/api/v1/workers', '/api/v1/nothing',
    '/api/v1/resources?kind=Secret', '/api/v1/resources?kind=ConfigMap', '/api/v1/resources?limit=1']) {
    answers.set(p, (await rawRequest(adminPort, p)).body);
  }
  const all = await allResources(adminPort, 'limit=2');
  all.bodies.forEach((body, i) => answers.set(`/api/v1/resources page ${i + 1}`, body));

  const needles = [
    ...secretFragments(material.keyPem),
    ...secretFragments(password), password,
    configMapSecretish,
    'PRIVATE KEY',
  ];
  for (const [where, body] of [...answers, ['the log', serve.output()] as const]) {
    for (const needle of needles) assert.ok(!body.includes(needle), `${where} holds secret material (${needle.slice(0, 12)}...)`);
  }

  // The listener is served (the key reached the IR), and the dump says which key and certificate without showing them.
  const ir = JSON.parse(answers.get('/api/v1/config')!);
  const [listener] = ir.listeners;
  assert.equal(listener.protocol, 'HTTPS');
  const [cert] = listener.tls.certificates;
  const x509 = new crypto.X509Certificate(material.certPem);
  const spki = `sha256:${crypto.createHash('sha256').update(crypto.createPublicKey(material.keyPem).export({ type: 'spki', format: 'der' })).digest('hex')}`;
  assert.equal(cert.certChain, undefined);
  assert.equal(cert.privateKey.redacted, true);
  assert.equal(cert.privateKey.publicKeySha256, spki);
  assert.equal(cert.privateKey.matchesCertificate, true);
  assert.equal(cert.certificate.sha256Fingerprint, x509.fingerprint256);
  assert.equal(cert.certificate.publicKeySha256, spki);
  assert.equal(cert.certificate.notAfter, new Date(x509.validTo).toISOString());
  assert.match(cert.certificate.subjectAltName, /DNS:\*\.gh-admin-/);
  // Secrets and ConfigMaps are read, never listed.
  assert.deepEqual(JSON.parse(answers.get('/api/v1/resources?kind=Secret')!).items, []);
  assert.deepEqual(JSON.parse(answers.get('/api/v1/resources?kind=ConfigMap')!).items, []);
  assert.ok(all.items.some((o) => o.kind === 'Gateway'));
  assert.match(answers.get('/api/v1/errors')!, /broken/);
});

test('a config dump holding a private key anywhere else is caught by the safety net', { timeout: 10_000 }, async (t) => {
  const material = makeTlsMaterial(os.tmpdir(), `gh-net-${process.pid}.test`);
  const logged: string[] = [];
  const ir = { version: 1, listeners: [], clusters: { c: { name: 'c', protocol: 'http1', endpoints: [], note: material.keyPem } } } as unknown as IR;
  const server = await admin(t, { config: () => ir, errors: () => [{ message: `oops ${material.keyPem}` }], log: (_l, msg) => logged.push(msg) });
  for (const p of ['/api/v1/config', '/api/v1/errors']) {
    const res = await rawRequest(server.port, p);
    assert.equal(res.status, 200);
    assert.ok(!res.body.includes('PRIVATE KEY'), p);
    assert.match(res.body, /\[redacted: private key\]/);
  }
  assert.equal(logged.filter((m) => /redacted/.test(m)).length, 2);
});

test('Host: only IP literals, localhost and the names allowed; 403 for the rest, probes included (DNS rebinding)', { timeout: 10_000 }, async (t) => {
  const server = await admin(t, { allowedHosts: ['Admin.Internal'] });
  const status = async (host: string, p = '/api/v1/config') => (await rawRequest(server.port, p, { host })).status;
  for (const host of [`127.0.0.1:${server.port}`, '127.0.0.1', `localhost:${server.port}`, 'LOCALHOST.', `[::1]:${server.port}`, '[::ffff:127.0.0.1]', `admin.internal:${server.port}`, '10.1.2.3']) {
    assert.equal(await status(host), 200, host);
  }
  for (const host of ['evil.example', `evil.example:${server.port}`, 'evil.localhost', 'localhost.evil.example', '127.0.0.1.evil.example', '::1', '[not-ip]', 'a b', 'user@127.0.0.1']) {
    assert.equal(await status(host), 403, host);
    assert.equal(await status(host, '/readyz'), 403, `${host} /readyz`);
  }
  const refused = await rawRequest(server.port, '/api/v1/config', { host: 'rebind.evil.example' });
  assert.match(JSON.parse(refused.body).error, /--admin-allowed-host/);
});

test('browser requests from another site are refused: Origin and Sec-Fetch-Site', { timeout: 10_000 }, async (t) => {
  const server = await admin(t);
  const host = `127.0.0.1:${server.port}`;
  const status = async (headers: Record<string, string>) => (await rawRequest(server.port, '/api/v1/config', { host, ...headers })).status;
  assert.equal(await status({ origin: 'http://evil.example' }), 403);
  assert.equal(await status({ origin: 'null' }), 403);
  assert.equal(await status({ origin: `https://${host}` }), 403);
  assert.equal(await status({ origin: `http://localhost:${server.port}` }), 403);
  assert.equal(await status({ 'sec-fetch-site': 'cross-site' }), 403);
  assert.equal(await status({ 'sec-fetch-site': 'same-site' }), 403);
  assert.equal(await status({ origin: `http://${host}` }), 200);
  assert.equal(await status({ 'sec-fetch-site': 'same-origin' }), 200);
  assert.equal(await status({ 'sec-fetch-site': 'none' }), 200);
});

test('the loopback check is honest: 127.0.0.0/8 and ::1 are loopback; all-interfaces and other addresses are not', () => {
  for (const a of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackAddress(a), true, a);
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1', 'fe80::1', 'localhost', '']) assert.equal(isLoopbackAddress(a), false, a);
});

/** Asserts that an admin server without a token on `address` does not start (and closes it if it did). */
async function refusedToStart(address: string, why: RegExp): Promise<void> {
  let started;
  try {
    started = await startAdminServer({ address, resources: () => [], errors: () => [], config: () => null, ready: () => true });
  } catch (e) {
    assert.match((e as Error).message, why);
    return;
  }
  await started.close();
  assert.fail(`an admin server without a token started on ${address}`);
}

test('beyond loopback a token is required to start, and then on every request but the probes', { timeout: 10_000 }, async (t) => {
  await refusedToStart('0.0.0.0:0', /not loopback \(it binds 0\.0\.0\.0\).*token/);
  await refusedToStart(':0', /not loopback \(it binds every interface\)/);
  // All interfaces, reached here through 127.0.0.1: what counts is what was bound.
  const server = await admin(t, { address: '0.0.0.0:0', token: TOKEN, workers: async () => [] });
  assert.equal(server.loopback, false);
  for (const p of ['/api/v1/config', '/api/v1/resources', '/api/v1/errors', '/api/v1/workers', '/api/v1/nothing']) {
    const res = await rawRequest(server.port, p);
    assert.equal(res.status, 401, p);
    assert.match(res.headers['www-authenticate'] ?? '', /^Bearer/);
    assert.equal((await rawRequest(server.port, p, { authorization: `Bearer ${TOKEN}x` })).status, 401, `${p} wrong token`);
    assert.equal((await rawRequest(server.port, p, { authorization: `Basic ${b64(`u:${TOKEN}`)}` })).status, 401, `${p} basic`);
    assert.equal((await rawRequest(server.port, p, { authorization: `bearer ${TOKEN}` })).status, p === '/api/v1/nothing' ? 404 : 200, `${p} right token`);
  }
  for (const p of ['/healthz', '/readyz']) assert.equal((await rawRequest(server.port, p)).status, 200, p);
});

test('on loopback the token is optional, and used when given', { timeout: 10_000 }, async (t) => {
  const open = await admin(t);
  assert.equal(open.loopback, true);
  assert.equal((await rawRequest(open.port, '/api/v1/config')).status, 200);
  const guarded = await admin(t, { address: '127.0.0.2:0', token: TOKEN });
  assert.equal(guarded.loopback, true);
  assert.equal((await rawRequest(guarded.port, '/api/v1/config', {}, { host: '127.0.0.2' })).status, 401);
  assert.equal((await rawRequest(guarded.port, '/api/v1/config', { authorization: `Bearer ${TOKEN}` }, { host: '127.0.0.2' })).status, 200);
});

test('the token file: refused when missing, empty, short, open to others, or not a regular file', { timeout: 10_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-token-'));
  const file = (name: string, text: string, mode = 0o600) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text, { mode });
    fs.chmodSync(f, mode);
    return f;
  };
  assert.throws(() => readAdminTokenFile(path.join(dir, 'absent')), /admin token file .*absent: cannot open: ENOENT/);
  assert.throws(() => readAdminTokenFile(file('empty', '\n')), /: empty/);
  assert.throws(() => readAdminTokenFile(file('short', 'x'.repeat(31))), /31 bytes, fewer than 32/);
  assert.throws(() => readAdminTokenFile(file('open', TOKEN, 0o644)), /mode 0644 lets group or other read/);
  assert.throws(() => readAdminTokenFile(file('group', TOKEN, 0o640)), /mode 0640/);
  assert.throws(() => readAdminTokenFile(file('spaced', `${'y'.repeat(20)} ${'z'.repeat(20)}`)), /one word of printable ASCII/);
  assert.throws(() => readAdminTokenFile(dir), /not a regular file/);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  // Opened without blocking, and refused: a FIFO must not stall the start.
  assert.throws(() => readAdminTokenFile(fifo), /not a regular file/);
  assert.equal(readAdminTokenFile(file('good', `${TOKEN}\n`)), TOKEN);
  // The error never shows the content.
  try { readAdminTokenFile(file('leaky', `${TOKEN}`, 0o644)); } catch (e) { assert.ok(!(e as Error).message.includes(TOKEN)); }
});

test('serve: a non-loopback --admin-address without a token file does not start; with one it needs the token', { timeout: 30_000 }, async (t) => {
  const dir = tempConfigDir();
  writeConfig(dir, 'class.yaml', GATEWAY_CLASS);
  const adminPort = await freePort();
  const refused = spawnGatehouse(['--config-dir', dir, '--admin-address', `0.0.0.0:${adminPort}`, '--workers', '0']);
  t.after(() => refused.kill());
  assert.equal(await exitWithin(refused, 10_000), 1, refused.output());
  assert.match(refused.output(), /admin address 0\.0\.0\.0:\d+ is not loopback .*--admin-token-file/);

  const tokenFile = path.join(dir, '..', `gh-token-${process.pid}`);
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o644 });
  fs.chmodSync(tokenFile, 0o644);
  t.after(() => fs.rmSync(tokenFile, { force: true }));
  const open = spawnGatehouse(['--config-dir', dir, '--admin-address', `0.0.0.0:${adminPort}`, '--admin-token-file', tokenFile, '--workers', '0']);
  t.after(() => open.kill());
  assert.equal(await exitWithin(open, 10_000), 1, open.output());
  assert.match(open.output(), /mode 0644 lets group or other read or write it; chmod 600/);
  assert.ok(!open.output().includes(TOKEN));

  fs.chmodSync(tokenFile, 0o600);
  const serve = spawnGatehouse(['--config-dir', dir, '--admin-address', `0.0.0.0:${adminPort}`, '--admin-token-file', tokenFile, '--workers', '0']);
  t.after(() => serve.kill());
  await untilReady(serve, adminPort);
  assert.equal((await rawRequest(adminPort, '/api/v1/resources')).status, 401);
  assert.equal((await rawRequest(adminPort, '/api/v1/resources', { authorization: `Bearer ${TOKEN}` })).status, 200);
  assert.ok(!serve.output().includes(TOKEN));
});

/** `n` HTTPRoute-like objects named r00000..., shuffled so the order given is not the order served. */
function fakeRoutes(n: number): { kind: string; metadata: { name: string; namespace: string }; spec: unknown }[] {
  const items = Array.from({ length: n }, (_, i) => ({ kind: 'HTTPRoute', metadata: { name: `r${String(i).padStart(5, '0')}`, namespace: i % 2 ? 'team-a' : 'team-b' }, spec: { hostnames: [`h${i}.example`] } }));
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

test('resources come in pages: limit (default 500, max 5000), a continue token, stable across reloads', { timeout: 20_000 }, async (t) => {
  let items: unknown[] = fakeRoutes(1234);
  const server = await admin(t, { resources: () => items });
  const first = JSON.parse((await rawRequest(server.port, '/api/v1/resources')).body);
  assert.equal(first.items.length, 500);
  assert.ok(typeof first.metadata.continue === 'string');
  const all = await allResources(server.port, 'limit=300');
  assert.equal(all.pages, 5);
  const keys = all.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`);
  assert.equal(new Set(keys).size, 1234);
  assert.deepEqual(keys, [...keys].sort());
  const last = JSON.parse((await rawRequest(server.port, '/api/v1/resources?limit=5000')).body);
  assert.equal(last.items.length, 1234);
  assert.deepEqual(last.metadata, {});
  // Beyond the maximum: the maximum.
  items = fakeRoutes(6000);
  assert.equal(JSON.parse((await rawRequest(server.port, '/api/v1/resources?limit=100000')).body).items.length, 5000);
  // Filters page too.
  const teamA = await allResources(server.port, 'namespace=team-a&limit=1000');
  assert.equal(teamA.items.length, 3000);
  assert.equal(teamA.pages, 3);
  // Bad limits and tokens are 400s that say why.
  for (const q of ['limit=0', 'limit=-1', 'limit=abc', 'continue=!!!', `continue=${Buffer.from('x').toString('base64url')}`]) {
    const res = await rawRequest(server.port, `/api/v1/resources?${q}`);
    assert.equal(res.status, 400, q);
    assert.match(JSON.parse(res.body).error, /limit|continue/);
  }
  // A reload between two pages: objects there throughout are neither repeated nor skipped.
  items = fakeRoutes(1000);
  const page1 = JSON.parse((await rawRequest(server.port, '/api/v1/resources?limit=400')).body);
  items = [...items.filter((o) => (o as { metadata: { name: string } }).metadata.name !== 'r00001'), { kind: 'HTTPRoute', metadata: { name: 'r99999', namespace: 'team-a' } }];
  let token = page1.metadata.continue;
  const rest: any[] = [];
  while (token) {
    const page = JSON.parse((await rawRequest(server.port, `/api/v1/resources?limit=400&continue=${token}`)).body);
    rest.push(...page.items);
    token = page.metadata.continue;
  }
  const seen = [...page1.items, ...rest].map((o: any) => `${o.metadata.namespace}/${o.metadata.name}`);
  assert.equal(new Set(seen).size, seen.length, 'no object twice');
  for (let i = 2; i < 1000; i++) assert.ok(seen.includes(`${i % 2 ? 'team-a' : 'team-b'}/r${String(i).padStart(5, '0')}`), `r${i} seen`);
});

/** An IR of `hosts` virtual hosts, about 1 KB each. */
function bigIR(hosts: number): IR {
  const virtualHosts = Array.from({ length: hosts }, (_, i) => ({
    hostname: `host-${i}.example.test`,
    routes: [{ name: `ns/route-${i}/0/0`, match: { path: { type: 'PathPrefix' as const, value: `/${'p'.repeat(900)}` }, headers: [], queryParams: [] }, filters: [], backends: [{ weight: 1, cluster: `c${i}`, filters: [] }] }],
  }));
  return { version: 1, listeners: [{ key: '0.0.0.0:1', address: '0.0.0.0', port: 1, protocol: 'HTTP', gatewayListeners: [{ name: 'ns/gw/http', hostname: null, virtualHosts }] }], clusters: {} };
}

/** A client that asks for `path` and never reads the answer; destroy() to let go. */
async function stalledClient(port: number, p: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  socket.pause();
  socket.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  return socket;
}

test('at most 4 listings at once (503 with Retry-After beyond), and a client that stops reading is cut at the write timeout', { timeout: 20_000 }, async (t) => {
  const ir = bigIR(40_000);
  const logged: string[] = [];
  const server = await admin(t, { config: () => ir, writeTimeoutMs: 1_500, log: (_l, msg, f) => logged.push(`${msg} ${JSON.stringify(f)}`) });
  const stalled = await Promise.all([0, 1, 2, 3].map(() => stalledClient(server.port, '/api/v1/config')));
  t.after(() => { for (const s of stalled) s.destroy(); });
  await new Promise((r) => setTimeout(r, 200));
  const busy = await rawRequest(server.port, '/api/v1/resources');
  assert.equal(busy.status, 503);
  assert.equal(busy.headers['retry-after'], '1');
  // Probes and the workers list are not listings: they still answer.
  assert.equal((await rawRequest(server.port, '/readyz')).status, 200);
  // A slot comes back when its client goes.
  stalled[0].destroy();
  await waitFor('a free slot', async () => (await rawRequest(server.port, '/api/v1/errors')).status === 200, 2_000);
  // The others are cut when they have read nothing for the write timeout.
  const t0 = performance.now();
  await waitFor('the stalled clients cut', async () => logged.filter((l) => /admin listing abandoned.*read nothing for 1500 ms/.test(l)).length === 3, 5_000);
  assert.ok(performance.now() - t0 < 4_000);
  assert.equal((await rawRequest(server.port, '/api/v1/resources')).status, 200);
  // And a whole config still comes out right.
  const whole = JSON.parse((await rawRequest(server.port, '/api/v1/config', {}, { timeoutMs: 10_000 })).body);
  assert.deepEqual(whole, JSON.parse(JSON.stringify(ir)));
});
