// The L4 data plane over real sockets: TLS passthrough by SNI, TLS
// terminate, weighted TCP, UDP sessions, half-close, and reloads that keep
// open connections whose route did not change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { freePort, ir, selfSigned, startDataPlane } from './helpers.ts';
import { closed, firstLine, freeUdpPort, l4cluster, l4listener, tcpBackend, tcpGreeting, tlsBackend, udpBackend } from './l4-helpers.ts';

test('TLS passthrough: the route is chosen by SNI and the client sees the backend certificate', async (t) => {
  const certA = selfSigned('a.example.com');
  const certB = selfSigned('b.example.com', ['b.example.com', 'x.wild.example.com']);
  const a = await tlsBackend(t, 'backend-a', certA);
  const b = await tlsBackend(t, 'backend-b', certB);
  const port = await freePort();
  const dp = await startDataPlane(t);
  const res = await dp.apply(ir([l4listener('TLS', port, [
    { name: 'ns/a', hostname: 'a.example.com', mode: 'Passthrough', backends: [{ weight: 1, cluster: 'a' }] },
    { name: 'ns/b', hostname: '*.wild.example.com', mode: 'Passthrough', backends: [{ weight: 1, cluster: 'b' }] },
  ])], [l4cluster('a', a.port), l4cluster('b', b.port)]));
  assert.deepEqual(res.listenerErrors, {});
  const hello = async (servername: string, ca: string) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca });
    await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject); });
    const line = await firstLine(s);
    const subject = s.getPeerCertificate().subject.CN;
    s.destroy();
    return [line, subject];
  };
  assert.deepEqual(await hello('a.example.com', certA.cert), ['backend-a', 'a.example.com']);
  assert.deepEqual(await hello('x.wild.example.com', certB.cert), ['backend-b', 'b.example.com']);
  // No route for the name: the connection is closed (no TLS alert, as
  // Envoy does for a name no filter chain matches), no backend reached.
  const before = a.connections + b.connections;
  await assert.rejects(hello('c.example.com', certA.cert), (err: NodeJS.ErrnoException) => {
    assert.ok(err.code === 'ECONNRESET' || /socket disconnected|socket hang up/i.test(err.message), `${err.code}: ${err.message}`);
    return true;
  });
  assert.equal(a.connections + b.connections, before);
});

test('TLS terminate: the listener certificate is served and cleartext reaches the TCP backend', async (t) => {
  const cert = selfSigned('t.example.com');
  const backend = await tcpBackend(t, 'plain');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(ir([l4listener('TLS', port, [
    { name: 'ns/t', hostname: 't.example.com', mode: 'Terminate', backends: [{ weight: 1, cluster: 'c' }] },
  ], [{ serverNames: ['t.example.com'], certChain: cert.cert, privateKey: cert.key }])], [l4cluster('c', backend.port)]));
  const s = tls.connect({ host: '127.0.0.1', port, servername: 't.example.com', ca: cert.cert });
  await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject); });
  assert.equal(s.getPeerCertificate().subject.CN, 't.example.com');
  assert.equal(await firstLine(s), 'plain');
  s.write('ping\n');
  assert.equal(await firstLine(s), 'ping');
  s.destroy();
});

test('TCP: connections are spread by weight; an invalid backend is refused', async (t) => {
  const one = await tcpBackend(t, 'one');
  const two = await tcpBackend(t, 'two');
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(ir([l4listener('TCP', port, [{ name: 'ns/r', hostname: '*', backends: [{ weight: 3, cluster: 'one' }, { weight: 1, cluster: 'two' }] }])],
    [l4cluster('one', one.port), l4cluster('two', two.port)]));
  const counts: Record<string, number> = {};
  for (let i = 0; i < 200; i++) {
    const who = await tcpGreeting(port);
    counts[who] = (counts[who] ?? 0) + 1;
  }
  assert.equal(counts.one + counts.two, 200);
  assert.ok(counts.one > 120 && counts.one < 180, `3:1 expected, got ${JSON.stringify(counts)}`);

  await dp.apply(ir([l4listener('TCP', port, [{ name: 'ns/r', hostname: '*', backends: [{ weight: 1, cluster: null }] }])], []));
  assert.equal(await tcpGreeting(port), '');
});

test('TCP: a half-close from the client reaches the backend, which can still answer', async (t) => {
  const backendPort = await new Promise<number>((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.on('data', (d) => { got += d.toString(); });
      s.on('end', () => s.end(`got ${got}`));
    });
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
  });
  const port = await freePort();
  const dp = await startDataPlane(t);
  await dp.apply(ir([l4listener('TCP', port, [{ name: 'ns/r', hostname: '*', backends: [{ weight: 1, cluster: 'c' }] }])], [l4cluster('c', backendPort)]));
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let answer = '';
  s.on('data', (d) => { answer += d.toString(); });
  s.end('hello');
  await new Promise((resolve) => s.once('end', resolve));
  assert.equal(answer, 'got hello');
  s.destroy();
});

test('UDP: each client gets its own session and its replies from the listener port', async (t) => {
  const backend = await udpBackend(t, 'dns');
  const port = await freeUdpPort();
  const dp = await startDataPlane(t);
  const res = await dp.apply(ir([l4listener('UDP', port, [{ name: 'ns/u', hostname: '*', backends: [{ weight: 1, cluster: 'u' }] }])], [l4cluster('u', backend.port)]));
  assert.deepEqual(res.listenerErrors, {});
  const ask = async (client: dgram.Socket, text: string) => {
    const reply = new Promise<[string, number]>((resolve) => client.once('message', (m, r) => resolve([m.toString(), r.port])));
    client.send(text, port, '127.0.0.1');
    return reply;
  };
  const c1 = dgram.createSocket('udp4');
  const c2 = dgram.createSocket('udp4');
  t.after(() => { c1.close(); c2.close(); });
  assert.deepEqual(await ask(c1, 'one'), ['dns:one', port]);
  assert.deepEqual(await ask(c2, 'two'), ['dns:two', port]);
  assert.deepEqual(await ask(c1, 'three'), ['dns:three', port]);
  // Two sessions: the backend saw two peers, one per client.
  assert.equal(backend.peers.size, 2);
});

test('reload: an open TCP connection survives a config change that keeps its route, and is closed when its route goes', async (t) => {
  const one = await tcpBackend(t, 'one');
  const two = await tcpBackend(t, 'two');
  const port = await freePort();
  const other = await freePort();
  const dp = await startDataPlane(t);
  const route = { name: 'ns/r', hostname: '*', backends: [{ weight: 1, cluster: 'one' }] };
  await dp.apply(ir([l4listener('TCP', port, [route])], [l4cluster('one', one.port)]));
  const s = net.connect(port, '127.0.0.1');
  assert.equal(await firstLine(s), 'one');
  // Another listener added: this connection's route is the same.
  await dp.apply(ir([l4listener('TCP', port, [route]), l4listener('TCP', other, [{ name: 'ns/o', hostname: '*', backends: [{ weight: 1, cluster: 'two' }] }])],
    [l4cluster('one', one.port), l4cluster('two', two.port)]));
  s.write('still\n');
  assert.equal(await firstLine(s), 'still');
  assert.equal(await tcpGreeting(other), 'two');
  // The route now sends elsewhere: the old connection is closed, new ones go to the new backend.
  await dp.apply(ir([l4listener('TCP', port, [{ ...route, backends: [{ weight: 1, cluster: 'two' }] }])], [l4cluster('two', two.port)]));
  assert.equal(await closed(s, 2_000), true);
  assert.equal(await tcpGreeting(port), 'two');
});
