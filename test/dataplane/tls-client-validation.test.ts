// Client certificates on HTTPS listeners (IR tls.clientValidation, from
// Gateway tls.frontend): AllowValidOnly lets through only clients whose
// certificate chains to the socket's CAs (a missing one, another CA's, or
// a self-signed one fail the handshake or are cut right after it);
// AllowInsecureFallback asks for one and lets every client through. Mode
// and CAs change with a config apply, no rebind; clients without SNI are
// validated too. Real TLS clients, HTTP/1.1 and HTTP/2.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import tls from 'node:tls';
import type { ClientValidation, IR } from '../../src/ir/types.ts';
import { backend, cluster, freePort, gatewayListener, ir, listener, match, route, selfSigned, startBackend, startDataPlane, vhost } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-mtls-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function openssl(args: string[]): void {
  execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'ignore' });
}

/** A CA: self-signed, CA:TRUE. */
function makeCA(name: string): { cert: string; keyFile: string; certFile: string } {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-days', '1', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), keyFile: `${name}.key`, certFile: `${name}.crt` };
}

/** A client certificate issued by `ca`. */
function makeClient(name: string, ca: { keyFile: string; certFile: string }): { cert: string; key: string } {
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  writeFileSync(join(dir, `${name}.ext`), 'extendedKeyUsage=clientAuth\n');
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`]);
  return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}

const caA = makeCA('ca-a');
const caB = makeCA('ca-b');
const clientA = makeClient('client-a', caA);
const clientB = makeClient('client-b', caB);
const selfSignedClient = selfSigned('client-self');
const server = selfSigned('example.org', ['example.org', 'other.example.org']);

type Client = { cert: string; key: string } | null;

/**
 * One HTTP/1.1 request over TLS with `client`'s certificate (null: none);
 * the status, or the error code when the handshake fails or the
 * connection is cut before an answer.
 */
function get(port: number, client: Client, servername = 'example.org'): Promise<number | string> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'],
      ...(client ? { cert: client.cert, key: client.key } : {}),
    });
    let text = '';
    const timer = setTimeout(() => finish('timeout'), 5_000);
    const finish = (r: number | string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    socket.once('secureConnect', () => socket.write('GET /mtls HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n'));
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m) finish(Number(m[1]));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    socket.on('close', () => finish('closed'));
  });
}

/** The same over HTTP/2. */
function getH2(port: number, client: Client): Promise<number | string> {
  return new Promise((resolve) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      servername: 'example.org', rejectUnauthorized: false, ...(client ? { cert: client.cert, key: client.key } : {}),
    });
    const timer = setTimeout(() => finish('timeout'), 5_000);
    const finish = (r: number | string) => {
      clearTimeout(timer);
      session.destroy();
      resolve(r);
    };
    session.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    session.on('close', () => finish('closed'));
    const stream = session.request({ ':path': '/mtls', ':authority': 'example.org' });
    stream.on('response', (h) => finish(Number(h[':status'])));
    stream.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    stream.end();
  });
}

test('client certificate validation on an HTTPS listener', async (t) => {
  const a = await startBackend(t, 'a');
  const port = await freePort();
  const dp = await startDataPlane(t);
  const config = (validation: ClientValidation | undefined, names = ['*']): IR => {
    const l = listener(port, [gatewayListener('ns/gw/https', null, [vhost('*', [route('all', match('/'), [backend('a')])])])], [
      { serverNames: names, certChain: server.cert, privateKey: server.key },
    ]);
    if (validation) l.tls!.clientValidation = validation;
    return ir([l], [cluster('a', a)]);
  };
  const apply = async (c: IR) => assert.deepEqual((await dp.apply(c)).listenerErrors, {});

  await apply(config(undefined));
  await t.test('without validation every client is served', async () => {
    assert.equal(await get(port, null), 200);
    assert.equal(await get(port, clientA), 200);
  });

  await apply(config({ caCertificates: caA.cert, mode: 'AllowValidOnly' }));
  await t.test('AllowValidOnly: only a certificate of the CA gets through, over HTTP/1.1 and HTTP/2', async () => {
    assert.equal(await get(port, clientA), 200);
    assert.equal(await getH2(port, clientA), 200);
    for (const client of [null, clientB, selfSignedClient]) {
      assert.equal(typeof await get(port, client), 'string', `HTTP/1.1 client ${client === null ? 'without certificate' : client.cert.slice(28, 40)}`);
      assert.equal(typeof await getH2(port, client), 'string', 'HTTP/2');
    }
  });

  await t.test('clients without SNI are validated the same', async () => {
    assert.equal(await get(port, clientA, ''), 200);
    assert.equal(typeof await get(port, clientB, ''), 'string');
    assert.equal(typeof await get(port, null, ''), 'string');
  });

  await apply(config({ caCertificates: caB.cert, mode: 'AllowValidOnly' }));
  await t.test('a new CA applies to new connections without a rebind', async () => {
    assert.equal(await get(port, clientB), 200);
    assert.equal(typeof await get(port, clientA), 'string');
  });

  await apply(config({ caCertificates: `${caA.cert}\n${caB.cert}`, mode: 'AllowValidOnly' }));
  await t.test('a bundle of CAs: a certificate of either gets through', async () => {
    assert.equal(await get(port, clientA), 200);
    assert.equal(await get(port, clientB), 200);
    assert.equal(typeof await get(port, selfSignedClient), 'string');
  });

  await apply(config({ caCertificates: caA.cert, mode: 'AllowInsecureFallback' }));
  await t.test('AllowInsecureFallback: any certificate, or none, gets through', async () => {
    for (const client of [clientA, clientB, selfSignedClient, null]) {
      assert.equal(await get(port, client), 200);
      assert.equal(await getH2(port, client), 200);
    }
  });

  await apply(config({ caCertificates: caA.cert, mode: 'AllowValidOnly' }, ['example.org']));
  await t.test('a certificate chosen by SNI carries the CAs too', async () => {
    assert.equal(await get(port, clientA), 200);
    assert.equal(typeof await get(port, clientB), 'string');
  });

  await apply(config(undefined));
  await t.test('validation removed: clients without a certificate are served again', async () => {
    assert.equal(await get(port, null), 200);
    assert.equal(await get(port, clientB), 200);
  });
});
