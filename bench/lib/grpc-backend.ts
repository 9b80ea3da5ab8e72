// node bench/lib/grpc-backend.ts PORT: the gRPC backend of cpu-ab's grpc
// scenario, an h2c server with one unary method that answers from memory;
// and grpcCheck, the one real gRPC call (@grpc/grpc-js) that proves a
// proxy carries a call whole, status trailer included, before its
// requests are counted.
//
// Why node and not nginx, as the other scenarios' backend is: a gRPC
// message is framed by a binary prefix (a flag byte and a 4-byte length,
// NUL bytes for any small message), which nginx's `return` cannot write,
// and serving the answer from a file means a file read per request, which
// the bench's backend gave up (issue 13 item 1). Why node's own http2
// server and not a grpc-js server: the answer is fixed bytes, so nothing
// needs (de)serialising, metadata objects, deadlines or a call object per
// request; a raw stream that writes three precomputed things costs the
// load core (which the backend shares with h2load) the least. The proxy's
// CPU is what cpu-ab reads, so the backend only has to be cheap and right;
// grpcCheck, a real client, is what says it is right.
import http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

/** Gatehouse routes the scenario by a GRPCRoute on this hostname; nginx by a server of this name. */
export const GRPC_HOST = 'grpc.bench.test';
export const GRPC_SERVICE = 'bench.Bench';
export const GRPC_METHOD = 'Call';
export const GRPC_PATH = `/${GRPC_SERVICE}/${GRPC_METHOD}`;

/** A protobuf message of one string field (number 1), as `message M { string text = 1; }` encodes it. */
function protoText(text: string): Buffer {
  const bytes = Buffer.from(text);
  if (bytes.length > 127) throw new Error('one-byte length only');
  return Buffer.concat([Buffer.from([0x0a, bytes.length]), bytes]);
}

export const GRPC_REQUEST = protoText('ping');
/** The fixed answer: 64 bytes of text, the size of the HTTP scenarios' small body. */
export const GRPC_REPLY = protoText('pong'.repeat(16));

/** A gRPC length-prefixed message: not compressed (0), then the length, big-endian. */
export function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function serve(port: number): void {
  const request = grpcFrame(GRPC_REQUEST);
  const reply = grpcFrame(GRPC_REPLY);
  const headers = { ':status': 200, 'content-type': 'application/grpc' };
  const trailers = { 'grpc-status': '0' };
  const server = http2.createServer();
  server.on('stream', (stream, reqHeaders) => {
    let body: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => { body = body.length === 0 ? chunk : Buffer.concat([body, chunk]); });
    stream.on('end', () => {
      if (reqHeaders[':path'] !== GRPC_PATH || !body.equals(request)) {
        // Not a gRPC status: h2load counts 2xx answers as succeeded, so a
        // request a proxy mangled must not get one.
        stream.respond({ ':status': 400 }, { endStream: true });
        return;
      }
      stream.respond(headers, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(trailers));
      stream.end(reply);
    });
    stream.on('error', () => { /* the peer reset it: nothing to answer */ });
  });
  server.on('sessionError', () => { /* one connection's fault, not the server's */ });
  server.listen(port, '127.0.0.1', () => process.stdout.write(`grpc backend on 127.0.0.1:${port}\n`));
}

/**
 * One unary call to GRPC_PATH at `address` (host:port, h2c) with the
 * authority GRPC_HOST; rejects unless the call ends with status OK and
 * the reply is GRPC_REPLY. grpc-js takes the status from the trailers, so
 * a proxy that drops or mangles them fails here.
 */
export async function grpcCheck(address: string): Promise<void> {
  // Loaded here, not at the top: the backend process does not need it.
  const grpcJs: typeof grpc = await import('@grpc/grpc-js');
  const client = new grpcJs.Client(address, grpcJs.credentials.createInsecure(), { 'grpc.default_authority': GRPC_HOST });
  const identity = (b: Buffer): Buffer => b;
  try {
    // The callback has no error only when the status (from the trailers) is OK and one message came.
    const reply = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest(GRPC_PATH, identity, identity, GRPC_REQUEST, new grpcJs.Metadata(), { deadline: Date.now() + 10_000 },
        (err, value) => (err === null ? resolve(value as Buffer)
          : reject(new Error(`gRPC call to ${address}: status ${grpcJs.status[err.code]} (${err.code}) ${err.details}`))));
    });
    if (!reply.equals(GRPC_REPLY)) {
      throw new Error(`gRPC call to ${address}: status OK but reply ${reply.toString('hex')}, expected ${GRPC_REPLY.toString('hex')}`);
    }
  } finally {
    client.close();
  }
}

if (import.meta.main) {
  const port = Number(process.argv[2]);
  if (!Number.isInteger(port) || port <= 0) {
    process.stderr.write('usage: node bench/lib/grpc-backend.ts PORT\n');
    process.exit(2);
  }
  serve(port);
}
