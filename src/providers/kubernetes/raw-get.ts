// GET of raw JSON from the API server with a KubeConfig's credentials, for
// the provider's lists and API discovery. Raw on purpose: the generated
// clients turn timestamps into Date objects and drop unknown fields, and
// the provider must hand validation exactly what the API server holds.
// Every request has a deadline and a size bound.
import http from 'node:http';
import https from 'node:https';
import type * as k8s from '@kubernetes/client-node';

export interface RawGetOptions {
  /** Aborts the request and the reading of its answer. */
  timeoutMs: number;
  /** Answers longer than this are refused (the connection is cut). */
  maxBytes: number;
  signal?: AbortSignal;
}

/** A failed GET: the HTTP status (0 when no answer came) and the API server's reason and message. */
export class RawGetError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  constructor(statusCode: number, reason: string, message: string) {
    super(message);
    this.name = 'RawGetError';
    this.statusCode = statusCode;
    this.reason = reason;
  }
}

/** GETs `path` (with query) from the current cluster of `kc`; resolves with the parsed JSON of a 200 answer. */
export async function rawGet(kc: k8s.KubeConfig, path: string, opts: RawGetOptions): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new RawGetError(0, 'NoCluster', 'the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const options: https.RequestOptions = {};
  // The credentials (token, client certificate, CA) as the client applies them to its own requests.
  await kc.applyToHTTPSOptions(options);
  const plain = url.protocol === 'http:';
  if (plain) delete options.agent;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      req.destroy();
      reject(err);
    };
    const onAbort = () => fail(new RawGetError(0, 'Aborted', 'aborted'));
    const timer = setTimeout(() => fail(new RawGetError(0, 'Timeout', `no complete answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const req = (plain ? http : https).request(url, { ...options, method: 'GET', headers: { ...options.headers, accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > opts.maxBytes) fail(new RawGetError(0, 'TooLarge', `answer larger than ${opts.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('error', (err) => fail(new RawGetError(0, 'Network', err.message)));
      res.on('end', () => {
        if (settled) return;
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          const s = (body ?? {}) as { reason?: unknown; message?: unknown };
          const reason = typeof s.reason === 'string' ? s.reason : res.statusMessage ?? '';
          const message = typeof s.message === 'string' ? s.message.slice(0, 300) : reason;
          fail(new RawGetError(status, reason, `HTTP ${status}${reason ? ` ${reason}` : ''}${message && message !== reason ? `: ${message}` : ''}`));
          return;
        }
        if (body === undefined) {
          fail(new RawGetError(status, 'BadJSON', 'the answer is not JSON'));
          return;
        }
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(body);
      });
    });
    req.on('error', (err) => fail(new RawGetError(0, 'Network', err.message)));
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.end();
  });
}
