// A ClientTrafficPolicy read from the config dir, end to end through
// `serve`'s control loop and a worker thread: the client address through two
// trusted X-Forwarded-For hops and the body limit, the policy's status on
// the admin API, then the file changed to require the PROXY protocol (the
// listener is rebound with it) and removed (defaults again).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { request } from 'undici';
import pino from 'pino';
import { startStandalone } from '../../src/control/standalone.ts';
import { GATEWAY_CLASS, freePort, gatewayYAML, serviceYAML, startEcho, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import { proxyV2 } from '../dataplane/proxy-protocol-helpers.ts';
import fs from 'node:fs';
import path from 'node:path';

const POOL = '127.44.0.0/24';
const GW = '127.44.0.1';

function policy(body: string): string {
  return `apiVersion: gatehouse.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: vip, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: http}]
${body}`;
}

function rawGet(port: number, prefix: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, GW, () => s.write(Buffer.concat([prefix, Buffer.from('GET / HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n')])));
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('close', () => resolve(text));
    s.on('error', () => resolve(text));
    setTimeout(() => s.destroy(), 5_000).unref();
  });
}

test('ClientTrafficPolicy from the config dir', { timeout: 60_000 }, async (t) => {
  const echo = await startEcho('a');
  t.after(() => echo.close());
  const port = await freePort();
  const dir = tempConfigDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeConfig(dir, '00-base.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(port)}---
${serviceYAML('default', 'a', 80, echo.port)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
`);
  writeConfig(dir, '10-policy.yaml', policy(`  clientIPDetection: {xForwardedFor: {numTrustedHops: 2}}
  maxRequestBodySize: 1Ki
`));
  // A worker thread: the settings cross the IR's process boundary as they would in production.
  const standalone = await startStandalone({ configDir: dir, adminAddress: '127.0.0.1:0', addressPool: POOL, log: pino({ level: 'silent' }), workers: 1 });
  const gw = Object.assign(standalone, { admin: `127.0.0.1:${standalone.adminPort}` });
  t.after(() => gw.close());
  const url = `http://${GW}:${port}/`;

  const r = await request(url, { headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.5' } });
  const body = (await r.body.json()) as { headers: Record<string, string> };
  assert.equal(body.headers['x-real-ip'], '203.0.113.7');
  const big = await request(url, { method: 'POST', body: Buffer.alloc(2048) });
  await big.body.dump();
  assert.equal(big.statusCode, 413);

  const resources = await request(`http://${gw.admin}/api/v1/resources`);
  const items = ((await resources.body.json()) as { items: { kind: string; status?: { ancestors?: { conditions: { type: string; status: string }[] }[] } }[] }).items;
  const ctp = items.find((i) => i.kind === 'ClientTrafficPolicy');
  assert.equal(ctp?.status?.ancestors?.[0]?.conditions[0]?.status, 'True', JSON.stringify(ctp));

  // Now the balancer in front speaks the PROXY protocol.
  writeConfig(dir, '10-policy.yaml', policy('  proxyProtocol: {}\n'));
  await waitFor('a listener requiring the PROXY protocol', async () => (await rawGet(port, Buffer.alloc(0))) === '');
  const proxied = await rawGet(port, proxyV2('192.0.2.44'));
  assert.match(proxied, /^HTTP\/1\.1 200/);
  assert.equal(JSON.parse(proxied.slice(proxied.indexOf('\r\n\r\n') + 4)).headers['x-real-ip'], '192.0.2.44');

  // Policy removed: the defaults, no X-Real-IP.
  fs.rmSync(path.join(dir, '10-policy.yaml'));
  await waitFor('the listener back to its defaults', async () => (await rawGet(port, Buffer.alloc(0))).startsWith('HTTP/1.1 200'));
  const plain = await request(url);
  assert.equal(((await plain.body.json()) as { headers: Record<string, string> }).headers['x-real-ip'], undefined);
});
