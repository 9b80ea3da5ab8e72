// The config protocol between the controller's config service and the
// `gatehouse proxy` processes of one Gateway.
//
// Transport: HTTP/2 over TLS; the proxy checks the controller's certificate
// against the CA it is given (--ca-file). One long-lived request per proxy:
//
//   GET /v1/config?gateway=<namespace>/<name>
//   Authorization: Bearer <the pod's projected ServiceAccount token, audience "gatehouse">
//
// The controller reviews the token (TokenReview) and answers
//   401  the token is not valid for audience "gatehouse" (expired, forged, wrong audience)
//   403  the token is valid but is not the ServiceAccount provisioned for that Gateway
//   404  another path; 405 another method; 400 no or a malformed `gateway`
//   503  the controller cannot say yet (no configuration for the Gateway yet,
//        the API server did not answer the review, too many reviews at once);
//        Retry-After says when to come back
//   200  `application/x-ndjson`: a stream of frames, one JSON object per line
//        (UTF-8, '\n'-terminated, at most MAX_FRAME_BYTES each), that lasts
//        as long as the connection:
//
//   {"type":"snapshot","protocol":1,"gateway":"ns/name","heartbeatIntervalMs":10000,"seq":1,"delta":IRDelta}
//       always first, exactly once: the Gateway's whole IR as a delta from
//       nothing (every virtual host and cluster defined; src/ir/delta.ts).
//       The controller sends each virtual host as its JSON text (asText);
//       a proxy takes either form.
//       `protocol` is CONFIG_PROTOCOL_VERSION; a proxy that does not speak
//       it drops the stream and keeps its config.
//   {"type":"delta","seq":2,"delta":IRDelta}
//       the IR changed: the delta from the one sent before on this stream.
//       Deltas are per stream (each stream has its own encoder), so a proxy
//       must apply every frame of a stream, in order; a new stream always
//       starts with a snapshot.
//   {"type":"heartbeat"}
//       every heartbeatIntervalMs while nothing else is sent. A proxy that
//       hears nothing for HEARTBEAT_MISSES intervals takes the controller
//       for gone and reconnects. The controller also PINGs each connection
//       every interval and closes one whose PING is not answered within an
//       interval: a proxy that vanished without a FIN or RST.
//
// The controller never buffers more than one frame (and a heartbeat) for a
// stream: while a proxy has not read the last frame, newer changes are
// folded into the next delta, sent once it has. A frame not taken within
// the write timeout resets the stream; the proxy reconnects and starts
// over from a snapshot. A frame over MAX_FRAME_BYTES is never sent (the
// stream is reset and the error logged) nor accepted (the proxy drops the
// stream), so each side bounds what it holds for one frame.
import type { IRDelta } from '../../ir/delta.ts';

export const CONFIG_PROTOCOL_VERSION = 1;

export const CONFIG_PATH = '/v1/config';

/** The token audience the proxies' projected tokens are requested for and the TokenReview asks for. */
export const TOKEN_AUDIENCE = 'gatehouse';

/**
 * Largest frame either side handles: 64 MiB. A snapshot of 5,000 routes
 * with certificates is a few MiB; this leaves room for an order of
 * magnitude more while bounding what one stream can make either side hold.
 */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/**
 * Default heartbeat interval: 10 s. A vanished peer is then noticed within
 * 20 s by the controller (PING unanswered) and 30 s by a proxy, which goes
 * on serving its last config meanwhile; the cost is a few bytes a second.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000;

/** Intervals of silence after which a proxy drops the stream and reconnects. */
export const HEARTBEAT_MISSES = 3;

export type ConfigFrame =
  | { type: 'snapshot'; protocol: number; gateway: string; heartbeatIntervalMs: number; seq: number; delta: IRDelta }
  | { type: 'delta'; seq: number; delta: IRDelta }
  | { type: 'heartbeat' };

/** Kubernetes object names: a namespace (DNS label) and a Gateway name (DNS subdomain). */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** `namespace/name` split, or null when it is not a valid Gateway reference. */
export function parseGatewayRef(ref: string): { namespace: string; name: string } | null {
  const slash = ref.indexOf('/');
  if (slash < 0) return null;
  const namespace = ref.slice(0, slash);
  const name = ref.slice(slash + 1);
  return NAMESPACE.test(namespace) && NAME.test(name) ? { namespace, name } : null;
}

/**
 * Splits a byte stream into frames at '\n'. Holds at most one partial
 * frame, refusing it once it passes `maxFrameBytes`.
 */
export class FrameReader {
  readonly #maxFrameBytes: number;
  #parts: Buffer[] = [];
  #held = 0;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** The complete frames `chunk` ends; throws for a frame too large or not a JSON object. */
  push(chunk: Buffer): ConfigFrame[] {
    const frames: ConfigFrame[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      this.#check(this.#held + piece.length);
      const line = this.#held === 0 ? piece : Buffer.concat([...this.#parts, piece]);
      this.#parts = [];
      this.#held = 0;
      start = nl + 1;
      if (line.length !== 0) frames.push(parseFrame(line));
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.#check(this.#held + rest.length);
      this.#parts.push(rest);
      this.#held += rest.length;
    }
    return frames;
  }

  #check(bytes: number): void {
    if (bytes > this.#maxFrameBytes) throw new Error(`config frame larger than ${this.#maxFrameBytes} bytes`);
  }
}

function parseFrame(line: Buffer): ConfigFrame {
  let frame: unknown;
  try {
    frame = JSON.parse(line.toString('utf8'));
  } catch (e) {
    throw new Error(`config frame is not JSON: ${(e as Error).message}`);
  }
  if (typeof frame !== 'object' || frame === null || typeof (frame as { type?: unknown }).type !== 'string') {
    throw new Error('config frame is not an object with a type');
  }
  return frame as ConfigFrame;
}
