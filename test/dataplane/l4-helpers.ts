// Fixtures for the L4 data plane tests: TCP, TLS and UDP backends that say
// who they are, L4 IR builders and small clients.
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import type { TestContext } from 'node:test';
import type { Cluster, IRListener, L4Route, TLSCertificate } from '../../src/ir/types.ts';

export interface L4Backend { port: number; connections: number }

/** A TCP backend that greets with `name\n` and then echoes what it gets. */
export async function tcpBackend(t: TestContext, name: string): Promise<L4Backend> {
  const b: L4Backend = { port: 0, connections: 0 };
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    b.connections++;
    s.write(`${name}\n`);
    s.pipe(s);
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  b.port = (server.address() as net.AddressInfo).port;
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); for (const s of open) s.destroy(); }));
  return b;
}

/** A TLS backend with its own certificate that greets with `name\n`. */
export async function tlsBackend(t: TestContext, name: string, cert: { cert: string; key: string }): Promise<L4Backend> {
  const b: L4Backend = { port: 0, connections: 0 };
  const server = tls.createServer({ cert: cert.cert, key: cert.key }, (s) => {
    b.connections++;
    s.write(`${name}\n`);
    s.pipe(s);
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  b.port = (server.address() as net.AddressInfo).port;
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return b;
}

/** A UDP backend that answers each datagram with `name:` and the datagram. */
export async function udpBackend(t: TestContext, name: string): Promise<L4Backend & { peers: Set<string> }> {
  const b = { port: 0, connections: 0, peers: new Set<string>() };
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    b.peers.add(`${rinfo.address}:${rinfo.port}`);
    socket.send(Buffer.concat([Buffer.from(`${name}:`), msg]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  b.port = socket.address().port;
  t.after(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return b;
}

export function l4cluster(name: string, ...ports: number[]): Cluster {
  return { name, protocol: 'http1', endpoints: ports.map((port) => ({ address: '127.0.0.1', port })) };
}

export function l4listener(protocol: 'TLS' | 'TCP' | 'UDP', port: number, routes: L4Route[], certificates?: TLSCertificate[]): IRListener {
  const l: IRListener = {
    key: `127.0.0.1:${port}${protocol === 'UDP' ? '/udp' : ''}`, address: '127.0.0.1', port, protocol,
    gatewayListeners: [{ name: `ns/gw/${protocol.toLowerCase()}`, hostname: null, virtualHosts: [] }],
    l4: { routes },
  };
  if (certificates !== undefined) l.tls = { certificates };
  return l;
}

export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Connects, reads the first line; resolves with it, or '' when the connection is closed before one. */
export function firstLine(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    const onData = (chunk: Buffer) => {
      data += chunk.toString();
      const nl = data.indexOf('\n');
      if (nl !== -1) { socket.off('data', onData); resolve(data.slice(0, nl)); }
    };
    socket.on('data', onData);
    socket.once('close', () => resolve(''));
    socket.once('error', () => resolve(''));
  });
}

export async function tcpGreeting(port: number): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  const line = await firstLine(s);
  s.destroy();
  return line;
}

export function closed(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => { clearTimeout(timer); resolve(true); });
  });
}
