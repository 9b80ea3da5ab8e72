// JSON answers written piece by piece, as fast as the client reads them.
// A listing of 20,000 routes built as one string costs tens of megabytes
// per request, and concurrent ones multiply it; written this way a request
// holds one chunk and the socket's buffer, whatever the size of the answer.
import type { ServerResponse } from 'node:http';
import { mayHoldPrivateKey, privateKeyReplacer } from './redact.ts';

/** Text gathered before a write: large enough that writes are few, small enough not to matter. */
const CHUNK_CHARS = 32 * 1024;

/** The client went away, or stopped reading for longer than the write timeout: stop producing. */
export class ClientGone extends Error {}

/**
 * Writes text to a response in chunks of CHUNK_CHARS. When the socket's
 * buffer is full, write() waits for it to drain, at most `writeTimeoutMs`;
 * a client that reads nothing for that long is cut off, so a stalled
 * reader holds its listing slot for a bounded time.
 */
export class ChunkedBody {
  readonly #res: ServerResponse;
  readonly #writeTimeoutMs: number;
  #pending = '';

  constructor(res: ServerResponse, writeTimeoutMs: number) {
    this.#res = res;
    this.#writeTimeoutMs = writeTimeoutMs;
  }

  /** Adds text; resolves at once unless a chunk had to wait for the client. */
  write(text: string): Promise<void> | void {
    this.#pending += text;
    if (this.#pending.length >= CHUNK_CHARS) return this.#flush();
  }

  async end(): Promise<void> {
    await this.#flush();
    this.#res.end();
  }

  async #flush(): Promise<void> {
    const chunk = this.#pending;
    this.#pending = '';
    const res = this.#res;
    if (res.destroyed) throw new ClientGone('client closed the connection');
    if (chunk === '' || res.write(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        res.off('drain', onDrain);
        res.off('close', onClose);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onDrain = () => done();
      const onClose = () => done(new ClientGone('client closed the connection'));
      const timer = setTimeout(() => {
        done(new ClientGone(`client read nothing for ${this.#writeTimeoutMs} ms`));
        res.destroy();
      }, this.#writeTimeoutMs);
      res.on('drain', onDrain);
      res.on('close', onClose);
    });
  }
}

/** Told when the safety net replaced a private key somewhere no known field put it. */
export type OnRedacted = () => void;

/**
 * JSON.stringify(value), with any string that holds a PEM private key
 * replaced (see redact.ts). The check is a substring search over the
 * result, so the common case costs no replacer call per value.
 */
export function safeStringify(value: unknown, onRedacted?: OnRedacted): string {
  const text = JSON.stringify(value) ?? 'null';
  if (!mayHoldPrivateKey(text)) return text;
  onRedacted?.();
  return JSON.stringify(value, privateKeyReplacer) ?? 'null';
}

/**
 * The JSON text of `value` in pieces: objects and arrays down to
 * `splitDepth` levels are opened and closed here, one member at a time;
 * deeper values are stringified whole. The result, joined, is what
 * JSON.stringify gives (plain data: no toJSON beyond the split levels'
 * own check, members that are undefined or functions left out of objects
 * and null in arrays). Each piece passes through safeStringify.
 */
export function* jsonPieces(value: unknown, splitDepth: number, onRedacted?: OnRedacted): Generator<string> {
  if (splitDepth <= 0 || value === null || typeof value !== 'object' || typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    yield safeStringify(value, onRedacted);
    return;
  }
  if (Array.isArray(value)) {
    yield '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) yield ',';
      yield* jsonPieces(omitted(value[i]) ? null : value[i], splitDepth - 1, onRedacted);
    }
    yield ']';
    return;
  }
  yield '{';
  let first = true;
  for (const key of Object.keys(value)) {
    const member = (value as Record<string, unknown>)[key];
    if (omitted(member)) continue;
    yield `${first ? '' : ','}${safeStringify(key, onRedacted)}:`;
    first = false;
    yield* jsonPieces(member, splitDepth - 1, onRedacted);
  }
  yield '}';
}

/** Values JSON.stringify leaves out of an object (and writes as null in an array). */
function omitted(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/** Writes every piece to `body`, waiting whenever the client is behind. */
export async function writePieces(body: ChunkedBody, pieces: Iterable<string>): Promise<void> {
  for (const piece of pieces) {
    const wait = body.write(piece);
    if (wait !== undefined) await wait;
  }
}
