// HTTP/2 clients for the data plane tests: node's own http2 client (the
// real protocol, nghttp2 at both ends), h2c with prior knowledge or h2 over
// TLS by ALPN.

import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { EchoReply } from './helpers.ts';

export interface H2Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json<T = EchoReply>(): T;
}

/** A session to 127.0.0.1:`port`; closed by the test's after hook. */
export async function h2connect(port: number, options: { tls?: boolean; servername?: string } = {}): Promise<http2.ClientHttp2Session> {
  const session = options.tls
    ? http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, servername: options.servername ?? 'example.com' })
    : http2.connect(`http://127.0.0.1:${port}`);
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.on('error', () => {});
  return session;
}

export interface H2RequestOptions {
  method?: string;
  authority?: string;
  headers?: http2.OutgoingHttpHeaders;
  body?: Buffer | string | Readable;
}

/** One request on `session`; resolves with the whole answer, rejects when the stream is reset. */
export function h2request(session: http2.ClientHttp2Session, path: string, options: H2RequestOptions = {}): Promise<H2Reply> {
  const method = options.method ?? 'GET';
  const body = options.body;
  const stream = session.request(
    { ':method': method, ':path': path, ':authority': options.authority ?? 'example.com', ...options.headers },
    { endStream: body === undefined },
  );
  if (body !== undefined) {
    if (typeof body === 'string' || Buffer.isBuffer(body)) stream.end(body);
    else body.pipe(stream);
  }
  return new Promise((resolve, reject) => {
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const buf = Buffer.concat(chunks);
      const text = buf.toString('utf8');
      resolve({ status: Number(headers[':status']), headers, body: buf, text, json: <T>() => JSON.parse(text) as T });
    });
    stream.on('error', reject);
    stream.on('close', () => {
      if (stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) reject(new Error(`stream reset with code ${stream.rstCode}`));
    });
  });
}
