// node's binding to llhttp, the HTTP/1.1 parser node's own server and
// client use (strict mode: the request-smuggling defences come with it).
// It is internal to node but has kept this shape since node 12; the client
// connections and the upstream client both parse with it, and read through
// consume() when the socket has a stream handle.

import { createRequire } from 'node:module';

export interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(b: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  /** Reads from the stream handle in C++ and reports each read through kOnExecute. */
  consume(handle: unknown): void;
  /** Gives the handle's reads back to the socket's stream (a connection that became a tunnel). */
  unconsume(): void;
  /** The read being parsed (a copy). */
  getCurrentBuffer(): Buffer;
  [callback: number]: unknown;
}

interface ParserClass {
  new (): Parser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserClass; methods: string[] };

export const HTTPParser: ParserClass = common.HTTPParser;
/** Request methods by the index the parser reports. */
export const METHODS: readonly string[] = common.methods;

/** The libuv stream under a net.Socket or TLSSocket. */
export interface StreamHandle {
  isStreamBase?: boolean;
  readStart(): number;
  readStop(): number;
}

/** The socket's stream handle when the parser can read from it directly, else null. */
export function consumableHandle(socket: object): StreamHandle | null {
  const handle = (socket as { _handle?: StreamHandle | null })._handle ?? null;
  return handle !== null && handle.isStreamBase === true ? handle : null;
}
