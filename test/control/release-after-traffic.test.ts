// When a thread gives its memory back after a load: once per load, never
// while requests keep coming, never on a gateway that saw none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { TrafficEnd, watchTrafficEnd } from '../../src/control/release-after-traffic.ts';

test('no traffic, no release, however long the quiet', () => {
  const end = new TrafficEnd(0, 0, 15_000);
  for (let t = 5_000; t <= 600_000; t += 5_000) assert.equal(end.look(0, t), false);
});

test('a load ended: one release, at the first look a quiet period after its last request', () => {
  const end = new TrafficEnd(0, 0, 15_000);
  assert.equal(end.look(100, 5_000), false);
  assert.equal(end.look(250, 10_000), false); // still coming
  assert.equal(end.look(250, 15_000), false);
  assert.equal(end.look(250, 24_999), false); // 14,999 ms of quiet
  assert.equal(end.look(250, 25_000), true);
  for (let t = 30_000; t <= 300_000; t += 5_000) assert.equal(end.look(250, t), false, `once only (t=${t})`);
});

test('steady traffic never releases; the next load after a release gets one of its own', () => {
  const end = new TrafficEnd(7, 0, 15_000);
  let count = 7;
  for (let t = 5_000; t <= 300_000; t += 5_000) assert.equal(end.look(count += 10, t), false);
  assert.equal(end.look(count, 320_000), true);
  assert.equal(end.look(count + 1, 325_000), false);
  assert.equal(end.look(count + 1, 335_000), false);
  assert.equal(end.look(count + 1, 340_000), true);
});

test('a count that starts above zero (a restarted watch) is not a load', () => {
  const end = new TrafficEnd(1_000, 0, 15_000);
  assert.equal(end.look(1_000, 60_000), false);
});

test('watchTrafficEnd: real timers, one call per load, none after stop()', async () => {
  let requests = 0;
  let ended = 0;
  // A quiet period far longer than the gaps between requests, so that a slow machine's late timers cannot end the load.
  const watch = watchTrafficEnd(() => requests, () => { ended++; }, 500, 10);
  try {
    await sleep(700);
    assert.equal(ended, 0, 'no load yet');
    for (let i = 0; i < 10; i++) { requests += 3; await sleep(20); }
    assert.equal(ended, 0, 'requests still coming');
    await sleep(1_000);
    assert.equal(ended, 1);
    requests++;
    await sleep(1_000);
    assert.equal(ended, 2);
  } finally {
    watch.stop();
  }
  requests++;
  await sleep(1_000);
  assert.equal(ended, 2, 'stopped');
});
