// Session persistence over real sockets and real backends (HTTPRoute
// sessionPersistence, GEP-1619): a cookie or header token keeps a session
// on one endpoint, through reloads that keep it, and moves when the
// endpoint goes; forged, stale and foreign tokens are balanced as usual.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import type { SessionPersistence } from '../../src/ir/types.ts';
import { backend, cluster, freePort, match, request, route, simpleIR, sleep, startBackend, startDataPlane, type Reply } from './helpers.ts';

const COOKIE: SessionPersistence = { type: 'Cookie', name: 'sticky', scope: 'ns/web/0', path: '/', lifetime: 'Session' };

/** The `name=value` of the Set-Cookie for `name`, or null. */
function setCookie(r: Reply, name: string): string | null {
  const all = r.headers['set-cookie'] ?? [];
  const line = all.find((c) => c.startsWith(`${name}=`));
  return line ?? null;
}

function pair(line: string): string {
  return line.split(';')[0];
}

/** A token not honoured: requests that bring it are balanced over both endpoints, each beginning a new session. */
async function assertBalanced(port: number, path: string, cookie: string, why: string): Promise<void> {
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const r = await served(port, path, { cookie });
    assert.ok(setCookie(r.reply, 'sticky'), `${why}: a new session begins`);
    seen.add(r.backend);
  }
  assert.deepEqual([...seen].sort(), ['a', 'b'], `${why}: balanced as usual`);
}

async function served(port: number, path: string, headers: Record<string, string> = {}): Promise<{ backend: string; reply: Reply }> {
  const reply = await request(port, path, { headers });
  assert.equal(reply.status, 200, reply.text);
  return { backend: reply.json().backend, reply };
}

test('a cookie keeps a session on one of two endpoints, through a reload that keeps it, and moves when it goes', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const c = await startBackend(t, 'c');
  const port = await freePort();
  const dp = await startDataPlane(t);
  const apply = async (...endpoints: { port: number }[]): Promise<void> => {
    const result = await dp.apply(simpleIR(port, [route('ns/web/0/0', match('/'), [backend('web')], { sessionPersistence: COOKIE })], [cluster('web', ...endpoints)]));
    assert.deepEqual(result.listenerErrors, {});
  };
  await apply(a, b);

  const first = await served(port, '/');
  const line = setCookie(first.reply, 'sticky');
  assert.ok(line, 'a new session gets a cookie');
  assert.match(line, /^sticky=[A-Za-z0-9_-]{55}; Path=\/; HttpOnly$/);
  // The token does not carry the endpoint's address or port in any form.
  const raw = Buffer.from(pair(line).slice('sticky='.length), 'base64url').toString('latin1');
  for (const leak of ['127.0.0.1', String(a.port), String(b.port)]) {
    assert.ok(!pair(line).includes(leak) && !raw.includes(leak), `token leaks ${leak}`);
  }
  const cookie = pair(line);

  // Without the cookie requests are balanced over both endpoints ...
  const unsticky = new Set<string>();
  for (let i = 0; i < 4; i++) unsticky.add((await served(port, '/')).backend);
  assert.deepEqual([...unsticky].sort(), ['a', 'b']);
  // ... with it, every one goes where the session began, and no new cookie is sent.
  for (let i = 0; i < 8; i++) {
    const r = await served(port, '/x', { cookie: `other=1; ${cookie}` });
    assert.equal(r.backend, first.backend);
    assert.equal(setCookie(r.reply, 'sticky'), null);
  }

  // A reload that keeps the endpoint (here: adds one) keeps the session.
  await apply(a, b, c);
  for (let i = 0; i < 6; i++) assert.equal((await served(port, '/', { cookie })).backend, first.backend);

  // The endpoint goes: the session moves to another, with a new cookie that sticks there.
  const remaining = first.backend === 'a' ? [b, c] : [a, c];
  await apply(...remaining);
  const moved = await served(port, '/', { cookie });
  assert.notEqual(moved.backend, first.backend);
  const newLine = setCookie(moved.reply, 'sticky');
  assert.ok(newLine, 'a moved session gets a new cookie');
  for (let i = 0; i < 6; i++) assert.equal((await served(port, '/', { cookie: pair(newLine) })).backend, moved.backend);
});

test('forged, tampered and other rules\' tokens are balanced as usual and get a new cookie', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [
    route('ns/web/0/0', match('/one'), [backend('web')], { sessionPersistence: COOKIE }),
    route('ns/web/1/0', match('/two'), [backend('web')], { sessionPersistence: { ...COOKIE, scope: 'ns/web/1' } }),
  ], [cluster('web', a, b)]));

  const first = await served(port, '/one');
  const cookie = pair(setCookie(first.reply, 'sticky')!);
  const value = cookie.slice('sticky='.length);
  // Flip one bit of the payload: the MAC no longer matches.
  const bytes = Buffer.from(value, 'base64url');
  bytes[20] ^= 1;
  const tampered = `sticky=${bytes.toString('base64url')}`;
  for (const bad of [tampered, 'sticky=MTI3LjAuMC4xOjgwODA', `sticky=${value}x`, 'sticky=']) await assertBalanced(port, '/one', bad, bad);
  // A token of rule 0 is not honoured by rule 1 even on the same cluster.
  await assertBalanced(port, '/two', cookie, 'a token of another rule');
});

test('header type: the token comes back in a response header and keeps the session', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  const sp: SessionPersistence = { type: 'Header', name: 'X-Session', scope: 'ns/api/0' };
  const apply = async (...endpoints: { port: number }[]): Promise<void> => {
    await dp.apply(simpleIR(port, [route('ns/api/0/0', match('/'), [backend('api')], { sessionPersistence: sp })], [cluster('api', ...endpoints)]));
  };
  await apply(a, b);
  const first = await served(port, '/');
  const token = first.reply.headers['x-session'];
  assert.equal(typeof token, 'string');
  assert.equal(first.reply.headers['set-cookie'], undefined);
  for (let i = 0; i < 8; i++) {
    const r = await served(port, '/', { 'x-session': token as string });
    assert.equal(r.backend, first.backend);
    assert.equal(r.reply.headers['x-session'], undefined, 'a continued session needs no new token');
  }
  await apply(first.backend === 'a' ? b : a);
  const moved = await served(port, '/', { 'x-session': token as string });
  assert.notEqual(moved.backend, first.backend);
  assert.equal(typeof moved.reply.headers['x-session'], 'string');
});

test('absoluteTimeout ends a session however busy; idleTimeout ends it after a pause, renewing the token on each request', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [
    route('ns/abs/0/0', match('/abs'), [backend('web')], { sessionPersistence: { ...COOKIE, scope: 'ns/abs/0', absoluteTimeoutMs: 600 } }),
    route('ns/idle/0/0', match('/idle'), [backend('web')], { sessionPersistence: { ...COOKIE, scope: 'ns/idle/0', idleTimeoutMs: 400 } }),
    route('ns/perm/0/0', match('/perm'), [backend('web')], { sessionPersistence: { ...COOKIE, scope: 'ns/perm/0', lifetime: 'Permanent', absoluteTimeoutMs: 3_600_000 } }),
  ], [cluster('web', a, b)]));

  // Absolute: honoured while young, whatever the traffic; refused once 600 ms have passed since it began.
  const abs = await served(port, '/abs');
  const absCookie = pair(setCookie(abs.reply, 'sticky')!);
  const began = Date.now();
  while (Date.now() - began < 400) {
    const r = await served(port, '/abs', { cookie: absCookie });
    assert.equal(r.backend, abs.backend);
    assert.equal(setCookie(r.reply, 'sticky'), null);
    await sleep(50);
  }
  await sleep(700 - (Date.now() - began));
  await assertBalanced(port, '/abs', absCookie, 'past absoluteTimeout');

  // Idle: requests 100 ms apart, each with the renewed cookie, outlive 400 ms; a 600 ms pause ends it.
  const idle = await served(port, '/idle');
  let idleCookie = pair(setCookie(idle.reply, 'sticky')!);
  const firstIdleCookie = idleCookie;
  for (let i = 0; i < 8; i++) {
    await sleep(100);
    const r = await served(port, '/idle', { cookie: idleCookie });
    assert.equal(r.backend, idle.backend, `request ${i} stays`);
    const renewed = setCookie(r.reply, 'sticky');
    assert.ok(renewed, 'each request renews the last-used time');
    idleCookie = pair(renewed);
  }
  // The first cookie, never renewed, is long idle by now.
  await assertBalanced(port, '/idle', firstIdleCookie, 'a cookie never renewed');
  await sleep(600);
  await assertBalanced(port, '/idle', idleCookie, 'past idleTimeout');

  // Permanent: Max-Age is the absolute timeout; Session cookies carry none.
  const perm = setCookie((await served(port, '/perm')).reply, 'sticky')!;
  assert.match(perm, /; Max-Age=3600(; |$)/);
  assert.doesNotMatch(setCookie((await served(port, '/abs')).reply, 'sticky')!, /Max-Age/);
});

test('session persistence picks the backend too: a session stays with one of two weighted backends', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(simpleIR(port, [route('ns/w/0/0', match('/'), [backend('ca'), backend('cb')], { sessionPersistence: { ...COOKIE, scope: 'ns/w/0' } })], [cluster('ca', a), cluster('cb', b)]));
  for (let s = 0; s < 3; s++) {
    const first = await served(port, '/');
    const cookie = pair(setCookie(first.reply, 'sticky')!);
    for (let i = 0; i < 10; i++) assert.equal((await served(port, '/', { cookie })).backend, first.backend);
  }
});

test('a GATEHOUSE_SESSION_KEY too short to be safe is refused at load, naming the variable and the length, not the value', () => {
  const secret = 'c2hvcnQtc2VjcmV0';
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(new URL('../../src/dataplane/upstream/sticky.ts', import.meta.url).href)})`], {
    env: { ...process.env, GATEHOUSE_SESSION_KEY: secret },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /GATEHOUSE_SESSION_KEY: expected at least 32 bytes in base64url, got 12/);
  assert.ok(!r.stderr.includes(secret), 'the key is not echoed');
});
