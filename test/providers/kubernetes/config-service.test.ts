// The controller's config service over real TLS and HTTP/2: who is
// answered what, what a proxy is sent (its own Gateway only: a snapshot,
// then deltas), and the bounds: one frame held for a proxy that does not
// read, then a reset; heartbeats and PINGs; connections, idle ones, and
// token reviews in flight.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { irForGateway } from '../../../src/ir/per-gateway.ts';
import type { IR, TLSCertificate } from '../../../src/ir/types.ts';
import { startConfigService, type Authentication, type ConfigService, type ConfigServiceOptions } from '../../../src/providers/kubernetes/config-service.ts';
import { backend, cluster, gatewayListener, ir, listener, match, route, selfSigned, vhost } from '../../dataplane/helpers.ts';
import { decoder, openConfigStream, recordingLog, startRelay, tlsMaterial, waitUntil } from '../../proxy/helpers.ts';

const TLS = tlsMaterial();

/** Tokens the test authenticator knows: `good-token` may read ns/gw and ns/other; `other-sa` is someone else. */
async function testAuthenticate(token: string, gateway: string): Promise<Authentication> {
  if (token === 'good-token') return { allowed: true, identity: `system:serviceaccount:ns:${gateway.split('/')[1]}` };
  if (token === 'other-sa') return { allowed: false, status: 403, reason: 'token of system:serviceaccount:ns:someone-else' };
  if (token === 'api-down') return { allowed: false, status: 503, reason: 'TokenReview failed (HTTP 500)' };
  return { allowed: false, status: 401, reason: 'token not authenticated' };
}

async function startService(t: TestContext, irFor: (gw: string) => IR | null, opts: Partial<ConfigServiceOptions> = {}) {
  const logs = recordingLog();
  const service = await startConfigService({
    address: '127.0.0.1:0',
    tls: { cert: TLS.cert, key: TLS.key },
    authenticate: testAuthenticate,
    irFor,
    log: logs.log,
    ...opts,
  });
  t.after(() => service.close());
  return { service, logs };
}

/** One HTTP listener of Gateway `gw` routing `/` to cluster `c-<gw name>` on `port`. */
function gatewayIR(gw: string, port: number, backendPort: number, path = '/'): IR {
  const name = gw.split('/')[1]!;
  return ir(
    [listener(port, [gatewayListener(`${gw}/http`, null, [vhost('*', [route(`${gw}/route/0/0`, match(path), [backend(`c-${name}`)])])])])],
    [cluster(`c-${name}`, { port: backendPort })],
  );
}

/** Two Gateways in one IR, as the controller's translate gives it: each with an HTTPS listener and its own key. */
function twoGatewayIR(): { ir: IR; keys: Record<string, TLSCertificate> } {
  const mine = selfSigned('mine.example.com');
  const theirs = selfSigned('theirs.example.com');
  const keys = {
    mine: { serverNames: ['mine.example.com'], certChain: mine.cert, privateKey: mine.key },
    theirs: { serverNames: ['theirs.example.com'], certChain: theirs.cert, privateKey: theirs.key },
  };
  const l1 = { ...listener(8443, [gatewayListener('ns/gw/https', 'mine.example.com', [vhost('mine.example.com', [route('ns/r1/0/0', match('/'), [backend('c1')])])])], [keys.mine]), key: 'ns/gw@10.0.0.1:8443', address: '10.0.0.1' };
  const l2 = { ...listener(8443, [gatewayListener('ns/other/https', 'theirs.example.com', [vhost('theirs.example.com', [route('ns/r2/0/0', match('/'), [backend('c2')])])])], [keys.theirs]), key: 'ns/other@10.0.0.2:8443', address: '10.0.0.2' };
  return { ir: ir([l1, l2], [cluster('c1', { port: 9001 }), cluster('c2', { port: 9002 })]), keys };
}

test('refusals: 404, 405, 400, 401 (none, bad), 403, 503 (review failed, no config yet), each said in a short body', async (t) => {
  const { service, logs } = await startService(t, (gw) => (gw === 'ns/gw' ? gatewayIR(gw, 8080, 9000) : null));
  const cases: { opts: Parameters<typeof openConfigStream>[3]; status: number; headers?: Record<string, string> }[] = [
    { opts: { path: '/v1/other' }, status: 404 },
    { opts: { method: 'POST' }, status: 405, headers: { allow: 'GET' } },
    { opts: { path: '/v1/config' }, status: 400 },
    { opts: { gateway: 'NS/Upper' }, status: 400 },
    { opts: { gateway: 'only-a-name' }, status: 400 },
    { opts: { token: null }, status: 401, headers: { 'www-authenticate': 'Bearer' } },
    { opts: { token: 'forged' }, status: 401, headers: { 'www-authenticate': 'Bearer' } },
    { opts: { token: 'other-sa' }, status: 403 },
    { opts: { token: 'api-down' }, status: 503, headers: { 'retry-after': '5' } },
    { opts: { gateway: 'ns/unknown' }, status: 503, headers: { 'retry-after': '2' } },
  ];
  for (const c of cases) {
    const s = await openConfigStream(t, service.port, TLS.ca, c.opts);
    assert.equal(s.status, c.status, JSON.stringify(c.opts));
    for (const [k, v] of Object.entries(c.headers ?? {})) assert.equal(s.headers[k], v, `${k} for ${JSON.stringify(c.opts)}`);
    assert.ok(s.raw().length > 0 && s.raw().length < 200, s.raw());
    s.close();
  }
  assert.equal(service.streams().length, 0);
  // No token is ever written to the log, not even a refused one.
  assert.doesNotMatch(logs.text(), /forged|other-sa|api-down|good-token/);
  assert.match(logs.text(), /config stream refused.*"status":403/);
});

test('a snapshot first, then on publish() only what changed; nothing when nothing changed', async (t) => {
  let current = gatewayIR('ns/gw', 8080, 9000);
  const { service } = await startService(t, (gw) => irForGateway(current, gw), { heartbeatIntervalMs: 60_000 });
  const s = await openConfigStream(t, service.port, TLS.ca);
  assert.equal(s.status, 200);
  assert.equal(s.headers['content-type'], 'application/x-ndjson');
  const decode = decoder();
  const first = await s.next();
  assert.equal(first.type, 'snapshot');
  assert.ok(first.type === 'snapshot' && first.protocol === 1 && first.gateway === 'ns/gw' && first.seq === 1 && first.heartbeatIntervalMs === 60_000);
  const snap = decode(first);
  assert.deepEqual(snap, irForGateway(current, 'ns/gw'));
  assert.equal(snap.listeners[0]!.key, '0.0.0.0:8080');
  assert.deepEqual(service.streams().map((i) => ({ gateway: i.gateway, identity: i.identity, seq: i.seq })), [{ gateway: 'ns/gw', identity: 'system:serviceaccount:ns:gw', seq: 1 }]);

  // The same IR published again: nothing is sent.
  service.publish();
  // A new route on a new path, the cluster kept: one virtual host defined, no cluster.
  const keptCluster = current.clusters['c-gw']!;
  current = gatewayIR('ns/gw', 8080, 9000, '/v2');
  current.clusters['c-gw'] = keptCluster;
  service.publish();
  const second = await s.next();
  assert.equal(second.type, 'delta');
  assert.ok(second.type === 'delta' && second.seq === 2);
  assert.ok(second.type === 'delta' && second.delta.define.virtualHosts.length === 1 && second.delta.define.clusters.length === 0);
  assert.deepEqual(decode(second), irForGateway(current, 'ns/gw'));
  assert.equal(s.frames.filter((f) => f.type !== 'heartbeat').length, 2, 'the publish without a change sent nothing');

  // The Gateway's listeners are gone from the IR: still a config (it serves nothing), sent as a delta.
  current = ir([], []);
  service.publish();
  const third = await s.next();
  assert.equal(third.type, 'delta');
  assert.deepEqual(decode(third).listeners, []);
});

test('the stream ends when the Gateway has no configuration any more; close() ends every stream', async (t) => {
  let known = true;
  const { service } = await startService(t, (gw) => (known ? gatewayIR(gw, 8080, 9000) : null));
  const a = await openConfigStream(t, service.port, TLS.ca);
  assert.equal((await a.next()).type, 'snapshot');
  known = false;
  service.publish();
  assert.equal(await a.closed, 0, 'ended, not reset');
  known = true;
  const b = await openConfigStream(t, service.port, TLS.ca);
  assert.equal((await b.next()).type, 'snapshot');
  await service.close();
  assert.equal(await b.closed, 0);
  await assert.rejects(openConfigStream(t, service.port, TLS.ca));
});

test("a proxy is sent its own Gateway's listeners, clusters and keys, never another's", async (t) => {
  const { ir: full, keys } = twoGatewayIR();
  const { service } = await startService(t, (gw) => irForGateway(full, gw));
  const s = await openConfigStream(t, service.port, TLS.ca, { gateway: 'ns/gw' });
  const got = decoder()(await s.next());
  assert.deepEqual(got.listeners.map((l) => l.gatewayListeners.map((g) => g.name)), [['ns/gw/https']]);
  assert.deepEqual(Object.keys(got.clusters), ['c1']);
  assert.deepEqual(got.listeners[0]!.tls?.certificates, [keys.mine]);
  const raw = s.raw();
  // A line of the key's base64 (the first lines of two P-256 keys share their opening bytes).
  const secretLine = (pem: string) => pem.split('\n')[2]!;
  assert.ok(raw.includes(secretLine(keys.mine.privateKey)), 'its own key is there');
  assert.ok(!raw.includes(secretLine(keys.theirs.privateKey)), "the other Gateway's key is not");
  assert.ok(!raw.includes('theirs.example.com') && !raw.includes('"c2"'));
});

test('heartbeats every interval while nothing else is sent', async (t) => {
  const { service } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), { heartbeatIntervalMs: 100 });
  const s = await openConfigStream(t, service.port, TLS.ca);
  assert.equal((await s.next()).type, 'snapshot');
  // Timed from the first heartbeat: the interval runs from the stream's
  // start, which the snapshot's delivery (slow on a busy machine) does not move.
  assert.equal((await s.next(2_000, false)).type, 'heartbeat');
  const started = Date.now();
  assert.equal((await s.next(2_000, false)).type, 'heartbeat');
  assert.equal((await s.next(2_000, false)).type, 'heartbeat');
  assert.ok(Date.now() - started >= 150, 'two more heartbeats take about two intervals');
});

test('a proxy that does not read: one frame held, later changes folded into the next delta, then a reset at the write timeout', async (t) => {
  // Frames far larger than the client's 64 KiB window, so that each waits on the proxy.
  const big = (n: number): IR => {
    const routes = Array.from({ length: 400 }, (_, i) => route(`ns/r/${i}/${n}`, match(`/path-${n}-${i}-${'x'.repeat(400)}`), [backend('c')]));
    return ir([listener(8080, [gatewayListener('ns/gw/http', null, [vhost('*', routes)])])], [cluster('c', { port: 9000 })]);
  };
  let version = 0;
  let current = big(version);
  const { service, logs } = await startService(t, () => current, { writeTimeoutMs: 1_500, heartbeatIntervalMs: 60_000 });

  // Reads again in time: it gets the snapshot and then the latest config, not every one in between.
  const slow = await openConfigStream(t, service.port, TLS.ca, { paused: true });
  assert.equal(slow.status, 200);
  for (let i = 0; i < 5; i++) {
    current = big(++version);
    service.publish();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  slow.resume();
  const decode = decoder();
  assert.equal((await slow.next()).type, 'snapshot');
  const configs = [decode(slow.frames[0]!)];
  for (;;) {
    const frame = await slow.next();
    configs.push(decode(frame));
    if (configs.at(-1)!.listeners[0]!.gatewayListeners[0]!.virtualHosts[0]!.routes[0]!.name === `ns/r/0/${version}`) break;
  }
  assert.ok(configs.length <= 3, `snapshot, at most one frame already queued, then the latest: got ${configs.length} frames for 6 configs`);

  // Never reads: reset once the write timeout passes.
  const stuck = await openConfigStream(t, service.port, TLS.ca, { paused: true });
  const opened = Date.now();
  current = big(++version);
  service.publish();
  const code = await stuck.closed;
  assert.equal(code, 8, 'RST_STREAM CANCEL');
  assert.ok(Date.now() - opened >= 1_400, `reset after the write timeout, not before (${Date.now() - opened} ms)`);
  assert.match(logs.text(), /did not read a frame within the write timeout/);
  // The other proxy is not held up by it.
  current = big(++version);
  service.publish();
  await waitUntil('the reading proxy gets the next config', () => slow.frames.length > configs.length);
});

test('a frame larger than the limit is never sent: the stream is reset and the error logged', async (t) => {
  const { service, logs } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), { maxFrameBytes: 200 });
  const s = await openConfigStream(t, service.port, TLS.ca);
  assert.equal(await s.closed, 2, 'RST_STREAM INTERNAL_ERROR');
  assert.equal(s.frames.length, 0);
  assert.match(logs.text(), /larger than the protocol allows/);
});

test('a connection that stops answering (no FIN) is closed after a PING goes unanswered', async (t) => {
  const { service, logs } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), { heartbeatIntervalMs: 150 });
  const relay = await startRelay(t, service.port);
  const s = await openConfigStream(t, relay.port, TLS.ca);
  assert.equal((await s.next()).type, 'snapshot');
  assert.equal(service.streams().length, 1);
  relay.freeze();
  await waitUntil('the service drops the stream', () => service.streams().length === 0, 3_000);
  assert.match(logs.text(), /PING not answered/);
});

test('maxConnections: connections beyond it are closed at accept', async (t) => {
  const { service } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), { maxConnections: 2 });
  const a = await openConfigStream(t, service.port, TLS.ca);
  const b = await openConfigStream(t, service.port, TLS.ca);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  const third = tls.connect({ host: '127.0.0.1', port: service.port, ca: TLS.ca, ALPNProtocols: ['h2'] });
  const outcome = await new Promise<string>((resolve) => {
    third.once('secureConnect', () => resolve('handshake completed'));
    third.once('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
    third.once('close', () => resolve('closed'));
  });
  third.destroy();
  assert.notEqual(outcome, 'handshake completed');
  a.close();
  await waitUntil('a slot is free again', async () => {
    const c = await openConfigStream(t, service.port, TLS.ca).catch(() => null);
    c?.close();
    return c?.status === 200;
  });
});

test('a connection without a config stream is closed after the idle timeout; a plain TCP client after the handshake timeout', async (t) => {
  const { service } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), { idleConnectionTimeoutMs: 300 });
  // Refused: the connection stays without a stream.
  const refused = await openConfigStream(t, service.port, TLS.ca, { token: 'forged' });
  assert.equal(refused.status, 401);
  const gone = new Promise<void>((resolve) => refused.session.once('close', resolve));
  const started = Date.now();
  await gone;
  assert.ok(Date.now() - started < 2_000);
  // Says nothing at all.
  const mute = net.connect(service.port, '127.0.0.1');
  mute.on('error', () => {});
  await new Promise<void>((resolve) => mute.once('close', () => resolve()));
});

test('reviews in flight are bounded: beyond the limit 503 at once, and a reset stream does not free its review early', async (t) => {
  const waiting: (() => void)[] = [];
  const { service } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), {
    authenticate: async (token, gateway) => { await new Promise<void>((resolve) => waiting.push(resolve)); return testAuthenticate(token, gateway); },
    maxPendingAuthentications: 1,
    authenticateTimeoutMs: 10_000,
  });
  // A review hangs; its client gives up and goes.
  const quitter = http2.connect(`https://127.0.0.1:${service.port}`, { ca: TLS.ca });
  quitter.on('error', () => {});
  quitter.request({ ':path': '/v1/config?gateway=ns/gw', authorization: 'Bearer good-token' }).on('error', () => {});
  await waitUntil('the first review started', () => waiting.length === 1);
  quitter.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const busy = await openConfigStream(t, service.port, TLS.ca);
  assert.equal(busy.status, 503, 'the review still runs, so there is no room for another');
  assert.equal(busy.headers['retry-after'], '1');
  // Once it settles, the next is reviewed.
  waiting.shift()!();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const next = openConfigStream(t, service.port, TLS.ca);
  await waitUntil('the next review started', () => waiting.length === 1);
  waiting.shift()!();
  assert.equal((await next).status, 200);
});

test('a review that takes too long: 503 with Retry-After', async (t) => {
  const { service } = await startService(t, (gw) => gatewayIR(gw, 8080, 9000), {
    authenticate: () => new Promise<Authentication>(() => {}),
    authenticateTimeoutMs: 200,
  });
  const s = await openConfigStream(t, service.port, TLS.ca);
  assert.equal(s.status, 503);
  assert.equal(s.headers['retry-after'], '5');
});
