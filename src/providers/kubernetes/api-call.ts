// Small helpers around @kubernetes/client-node calls: a deadline on every
// request (the client sets none, and a request to an API server that stopped
// answering would wait for ever), and errors told in one short line.
import { ApiException, Observable, type ConfigurationOptions, type ObservableMiddleware } from '@kubernetes/client-node';

/**
 * Per-call options that abort the request (and the reading of its answer)
 * after `timeoutMs`, or when `signal` aborts.
 */
export function callOptions(timeoutMs: number, signal?: AbortSignal): ConfigurationOptions {
  const deadline: ObservableMiddleware = {
    pre(ctx) {
      const timeout = AbortSignal.timeout(timeoutMs);
      ctx.setSignal(signal === undefined ? timeout : AbortSignal.any([timeout, signal]));
      return new Observable(Promise.resolve(ctx));
    },
    post(res) {
      return new Observable(Promise.resolve(res));
    },
  };
  return { middleware: [deadline], middlewareMergeStrategy: 'append' };
}

/** The HTTP status of a failed call, or null when no answer came (network, timeout). */
export function httpCode(err: unknown): number | null {
  return err instanceof ApiException ? err.code : null;
}

/**
 * One line saying why a call failed, for logs: the HTTP status with the
 * API server's own reason and message, or the network error. Never the
 * request or response body (the exception's message holds both, headers
 * too).
 */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    let status: { reason?: unknown; message?: unknown } = {};
    try {
      const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      if (body !== null && typeof body === 'object') status = body as typeof status;
    } catch { /* not a Status object: the code says enough */ }
    const reason = typeof status.reason === 'string' ? ` ${status.reason}` : '';
    const message = typeof status.message === 'string' ? `: ${status.message}` : '';
    return clip(`HTTP ${err.code}${reason}${message}`);
  }
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  if (e?.name === 'TimeoutError') return 'timed out';
  if (e?.name === 'AbortError') return 'aborted';
  const cause = e?.cause?.code ?? e?.cause?.message;
  return clip(`${String(e?.message ?? err).split('\n')[0]}${cause ? ` (${cause})` : ''}`);
}

function clip(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
}
