// Path tricks against a prefix route: `/public` is routed to the backend,
// nothing else is. A path that a backend decoding %2F or %5C (or reading
// `\` as `/`) would resolve outside `/public` must be refused with 400
// before routing, and an encoded slash used as data (object names, as
// OpenStack's object and image services use it) must reach the backend
// unchanged. Each case checks the status and what the backend saw.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backend, cluster, freePort, match, rawExchange, route, simpleIR, startDataPlane } from '../dataplane/helpers.ts';
import { firstStatus, startRecordingBackend } from './client-helpers.ts';

const REFUSED = [
  '/public/..%2fadmin',
  '/public/..%2Fadmin',
  '/public/..%5cadmin',
  '/public/..%5Cadmin',
  '/public/%2e%2e%2fadmin',
  '/public/%2E%2E%5Cadmin',
  '/public/.%2f..%2fadmin',
  '/public/x%2f..%2f..%2fadmin',
  '/public/..\\admin',
  '/public\\..\\admin',
];

/** Path sent -> path the backend must see. */
const FORWARDED: [string, string][] = [
  ['/public/photos%2F2024%2Fa.jpg', '/public/photos%2F2024%2Fa.jpg'],
  ['/public/a%2fb', '/public/a%2Fb'],
  ['/public/a%5Cb', '/public/a%5Cb'],
  ['/public/..b%2Fc', '/public/..b%2Fc'],
  ['/public/a/../b', '/public/b'],
  ['/public/%2e%2e/public/x', '/public/x'],
];

test('client path tricks', { timeout: 15_000 }, async (t) => {
  const recording = await startRecordingBackend(t);
  const port = await freePort();
  const dp = await startDataPlane(t, { limits: { headersTimeoutMs: 500, keepAliveTimeoutMs: 1_000 } });
  await dp.apply(simpleIR(port, [route('public', match('/public'), [backend('b')])], [cluster('b', recording)]));
  const get = (path: string) => rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n`, 2_000);

  for (const path of REFUSED) {
    await t.test(`${path}: 400, nothing forwarded`, async () => {
      const before = recording.seen.length;
      const reply = await get(path);
      assert.equal(firstStatus(reply.text), 400, reply.text.slice(0, 80));
      assert.ok(reply.closed);
      assert.equal(recording.seen.length, before, `backend saw ${recording.seen.slice(before).map((r) => r.url).join(', ')}`);
    });
  }

  for (const [path, seen] of FORWARDED) {
    await t.test(`${path}: forwarded as ${seen}`, async () => {
      const reply = await get(path);
      assert.equal(firstStatus(reply.text), 200, reply.text.slice(0, 80));
      assert.equal(recording.seen.at(-1)?.url, seen);
    });
  }

  await t.test('outside the prefix after normalisation: 404, nothing forwarded', async () => {
    const before = recording.seen.length;
    assert.equal(firstStatus((await get('/public/../admin')).text), 404);
    assert.equal(firstStatus((await get('/public/%2e%2e/admin')).text), 404);
    assert.equal(recording.seen.length, before);
  });
});
