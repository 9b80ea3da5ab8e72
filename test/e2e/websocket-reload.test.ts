// The WebSocket reload claim, on a real `gatehouse serve` with two worker
// threads: 100 open WebSockets stay open through 50 reloads of other routes
// (files rewritten in the config dir, each reload confirmed applied by
// every worker through the admin API), each still echoing afterwards; a
// weight change on their own route keeps them; so does removing their
// route (README: an open WebSocket is never closed by a config change,
// only by its ends, its idle timeout or its listener's drain), while new
// handshakes follow the config.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePort, GATEWAY_CLASS, gatewayYAML, serviceYAML, spawnServe, tempConfigDir, waitFor, writeConfig } from './helpers.ts';
import { OP_TEXT, startWsBackend, WsClient } from './websocket-helpers.ts';

const SOCKETS = 100;
const RELOADS = 50;
const HOST = 'console.example.test';

function consoleRoute(backends: string): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: console, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [${HOST}]
  rules: [{matches: [{path: {type: PathPrefix, value: /console}}], backendRefs: ${backends}}]
`;
}

/** Version `v` of the other routes: one added and one gone at each version, and one changed. */
function otherRoutes(v: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-${v}, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /other-${v}}}], backendRefs: [{name: ws-b, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: changing, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /changing}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Version, value: "${v}"}]}}]
    backendRefs: [{name: ws-b, port: 80, weight: ${1 + (v % 4)}}]
`;
}

test(`${SOCKETS} open WebSockets stay open through ${RELOADS} reloads of other routes, their own route's weight change and its removal`, { timeout: 240_000 }, async (t) => {
  const a = await startWsBackend('a');
  const b = await startWsBackend('b');
  t.after(() => a.close());
  t.after(() => b.close());
  const dir = tempConfigDir();
  const port = await freePort();
  const adminPort = await freePort();
  const admin = `http://127.0.0.1:${adminPort}`;
  writeConfig(dir, '00-base.yaml', `${GATEWAY_CLASS}---
${gatewayYAML(port)}---
${serviceYAML('default', 'ws-a', 80, a.port)}---
${serviceYAML('default', 'ws-b', 80, b.port)}`);
  writeConfig(dir, '10-console.yaml', consoleRoute('[{name: ws-a, port: 80}]'));
  writeConfig(dir, '20-others.yaml', otherRoutes(0));
  const serve = spawnServe(['--config-dir', dir, '--admin-address', `127.0.0.1:${adminPort}`, '--workers', '2', '--log-level', 'warn', '--shutdown-delay', '0s',
    // Short, so that a reload that drained the listener (instead of keeping it) would cut the sockets within the test.
    '--drain-timeout', '2s']);
  const clients: WsClient[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    const code = await serve.stop(20_000);
    assert.equal(code, 0, `exit code; output:\n${serve.output()}`);
  });

  const configText = async () => (await fetch(`${admin}/api/v1/config`)).text();
  const workersCurrent = async () => {
    const { items } = (await (await fetch(`${admin}/api/v1/workers`)).json()) as { items: { current: boolean }[] };
    return items.length === 2 && items.every((w) => w.current);
  };
  /** The admin API shows the config with `present` and without `absent`, and every worker runs it. */
  const applied = (what: string, present: string, absent: string | null) =>
    waitFor(what, async () => {
      const text = await configText();
      return text.includes(present) && (absent === null || !text.includes(absent)) && (await workersCurrent());
    }, 15_000);

  await waitFor('readyz', async () => (await fetch(`${admin}/readyz`)).status === 200, 30_000);
  for (let i = 0; i < SOCKETS; i++) {
    const c = new WsClient(port);
    clients.push(c);
    const answer = await c.open(`/console/${i}`, HOST);
    assert.equal(answer.status, 101, `socket ${i}: ${answer.head}`);
  }
  assert.equal(a.open.size, SOCKETS);
  const allEcho = async (what: string, backendName: string) => {
    const closed = clients.map((c, i) => (c.closed ? i : -1)).filter((i) => i >= 0);
    assert.deepEqual(closed, [], `${what}: sockets closed`);
    await Promise.all(clients.map(async (c, i) => {
      const frame = await c.echo(OP_TEXT, `${what} ${i}`);
      assert.equal(frame.payload.toString(), `${backendName}:${what} ${i}`);
    }));
  };
  await allEcho('opened', 'a');

  for (let v = 1; v <= RELOADS; v++) {
    writeConfig(dir, '20-others.yaml', otherRoutes(v));
    await applied(`reload ${v}`, `default/other-${v}/`, `default/other-${v - 1}/`);
    // A few sockets talk during the reloads, a different few each time.
    for (let k = 0; k < 4; k++) {
      const i = (v * 4 + k) % SOCKETS;
      assert.equal((await clients[i].echo(OP_TEXT, `during ${v}`)).payload.toString(), `a:during ${v}`, `socket ${i} after reload ${v}`);
    }
  }
  await allEcho(`after ${RELOADS} reloads`, 'a');
  assert.equal(a.open.size, SOCKETS, 'the backend still holds every tunnel');

  // Their own route: new weights, and a second backend.
  writeConfig(dir, '10-console.yaml', consoleRoute('[{name: ws-a, port: 80, weight: 1}, {name: ws-b, port: 80, weight: 9}]'));
  await applied('the console route\'s new weights', '"weight":9', null);
  await waitFor('both backends in the console route', async () => {
    const c = new WsClient(port);
    try {
      await c.open('/console/new', HOST);
      return (await c.echo(OP_TEXT, 'x')).payload.toString() === 'b:x';
    } finally {
      c.destroy();
    }
  }, 15_000);
  await allEcho('after its weights changed', 'a');

  // Their route removed: they stay (README), and new handshakes get 404.
  writeConfig(dir, '10-console.yaml', '# console route removed\n');
  await applied('the console route removed', `default/other-${RELOADS}/`, 'default/console/');
  const refused = new WsClient(port);
  clients.push(refused);
  assert.equal((await refused.open('/console/late', HOST)).status, 404);
  clients.pop();
  await allEcho('after its route was removed', 'a');
  await Promise.all(clients.map((c) => c.close()));
  await waitFor('every backend side closed', async () => a.open.size === 0);
});
