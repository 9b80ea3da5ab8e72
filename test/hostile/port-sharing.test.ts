// Another process of the same user can join our SO_REUSEPORT listeners
// and take a share of their connections: the kernel allows it, so
// gatehouse watches for it. Real sockets, a real second process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { findForeignListeners, parseListeningSockets, readListeningPrefix, type BoundListener } from '../../src/control/port-sharing.ts';
import { watchPortSharing } from '../../src/control/port-sharing-watch.ts';
import { freePort } from '../e2e/helpers.ts';

const linux = process.platform === 'linux';

function listen(host: string, port: number): Promise<net.Server> {
  const server = net.createServer((s) => s.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, reusePort: true }, () => resolve(server));
  });
}

/** A second process listening on host:port with SO_REUSEPORT, until killed. */
async function intruder(t: import('node:test').TestContext, host: string, port: number): Promise<number> {
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer((s) => s.destroy())
    .listen({ host: ${JSON.stringify(host)}, port: ${port}, reusePort: true }, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`intruder exited with ${code}`)));
  });
  return child.pid!;
}

test('our own listeners, however many share a port in this process, are not reported', { skip: !linux, timeout: 10_000 }, async (t) => {
  const port = await freePort();
  const a = await listen('127.0.0.1', port);
  const b = await listen('127.0.0.1', port);
  t.after(() => { a.close(); b.close(); });
  assert.deepEqual(findForeignListeners([{ address: '127.0.0.1', port }]), []);
});

test('a process that joins a listener with SO_REUSEPORT is found, with its pid', { skip: !linux, timeout: 10_000 }, async (t) => {
  const port = await freePort();
  const ours = await listen('127.0.0.1', port);
  t.after(() => ours.close());
  const pid = await intruder(t, '127.0.0.1', port);
  const found = findForeignListeners([{ address: '127.0.0.1', port }]);
  assert.equal(found.length, 1);
  assert.equal(found[0].pid, pid);
  assert.equal(found[0].socket, `127.0.0.1:${port}`);
  assert.equal(found[0].listener, `127.0.0.1:${port}`);
  assert.match(found[0].command ?? '', /node/);
});

test('a process on a more specific address of a wildcard listener is found; one on another address is not', { skip: !linux, timeout: 10_000 }, async (t) => {
  const port = await freePort();
  const ours = await listen('0.0.0.0', port);
  t.after(() => ours.close());
  const pid = await intruder(t, '127.0.0.1', port);
  const found = findForeignListeners([{ address: '0.0.0.0', port }]);
  assert.deepEqual(found.map((f) => f.pid), [pid]);

  const port2 = await freePort();
  const specific = await listen('127.0.0.1', port2);
  t.after(() => specific.close());
  await intruder(t, '127.0.0.2', port2);
  assert.deepEqual(findForeignListeners([{ address: '127.0.0.1', port: port2 }]), [], '127.0.0.2 takes none of 127.0.0.1\'s connections');
});

test('/proc/net/tcp6 addresses are decoded as inet_ntop writes them', () => {
  const table = [
    '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0',
    '   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0',
    '   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0',
    '   3: 0000000000000000FFFF00000100007F:1F93 00000000000000000000000000000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0',
  ].join('\n');
  assert.deepEqual(parseListeningSockets(table), [
    { address: '::', port: 8080, uid: 0, inode: '111' },
    { address: '::1', port: 8081, uid: 1000, inode: '222' },
    { address: '::ffff:127.0.0.1', port: 8082, uid: 0, inode: '333' },
  ]);
});

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const line = (i: number, state: string) => `${String(i).padStart(4)}: 0100007F:${(8000 + i).toString(16).toUpperCase()} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000     0        0 ${1000 + i} 1 0 100 0 0 10 0`;

test('a table is read up to its last listening socket, not through every connection after it', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-tcp-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'tcp');
  // As the kernel writes it: listeners first, then 50,000 TIME_WAIT lines (~7 MB).
  const lines = [HEADER, line(0, '0A'), line(1, '0A')];
  for (let i = 2; i < 50_002; i++) lines.push(line(i, '06'));
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  const { text, bytesRead } = readListeningPrefix(file);
  assert.deepEqual(parseListeningSockets(text).map((s) => s.port), [8000, 8001]);
  assert.ok(bytesRead <= 64 * 1024, `read ${bytesRead} bytes of ${fs.statSync(file).size}`);
  // A table of listeners only is read to its end; one over the bound is cut at a line.
  fs.writeFileSync(file, `${[HEADER, ...Array.from({ length: 3000 }, (_, i) => line(i, '0A'))].join('\n')}\n`);
  assert.equal(parseListeningSockets(readListeningPrefix(file).text).length, 3000);
  const cut = readListeningPrefix(file, 100_000);
  assert.ok(cut.bytesRead <= 100_000);
  const sockets = parseListeningSockets(cut.text);
  assert.ok(sockets.length > 500 && sockets.length < 3000, `${sockets.length} sockets`);
  assert.deepEqual(sockets.map((s) => s.port), sockets.map((_, i) => 8000 + i), 'no line is cut in half');
  assert.deepEqual(readListeningPrefix(path.join(dir, 'absent')), { text: '', bytesRead: 0 });
});

test('the port-sharing watch looks when the bound addresses change, not on every configuration change', () => {
  const looks: string[] = [];
  const watch = watchPortSharing(pino({ level: 'silent' }), 60_000, (listeners: readonly BoundListener[]) => {
    looks.push(listeners.map((l) => `${l.address}:${l.port}`).join(','));
    return [];
  });
  try {
    const http = { address: '0.0.0.0', port: 80 };
    const https = { address: '0.0.0.0', port: 443 };
    watch.check([http]);
    watch.check([http]);
    watch.check([https, http]);
    watch.check([http, https]);
    watch.check([http]);
    assert.deepEqual(looks, ['0.0.0.0:80', '0.0.0.0:443,0.0.0.0:80', '0.0.0.0:80']);
  } finally {
    watch.stop();
  }
});
