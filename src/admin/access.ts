// Who may talk to the admin API. It serves the gateway's whole
// configuration, so three checks stand in front of every endpoint:
//
// - The Host header. A web page on any site can make the browser on the
//   gateway's host send requests to 127.0.0.1:9901, and with DNS rebinding
//   (the attacker's name first resolves to their server, then, with a short
//   TTL, to 127.0.0.1) the browser treats the answers as the attacker's own
//   origin and lets the page read them. Such requests still carry the
//   attacker's name in Host, so only IP literals, `localhost` and names the
//   operator lists are answered.
// - Browser cross-site requests. Without rebinding a page can still make
//   the browser send requests (it cannot read the answers, but need not
//   read to do harm to a future endpoint that changes something). Browsers
//   say where a request comes from: `Origin` on cross-origin fetches and
//   `Sec-Fetch-Site` on every request; one that is not same-origin is
//   refused.
// - A bearer token, required when the API listens beyond loopback.
import crypto from 'node:crypto';
import net from 'node:net';

/** The loopback networks: 127.0.0.0/8 and ::1 (IPv4-mapped 127.x addresses included, as node's BlockList matches them). */
const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether `ip`, an IP literal, is a loopback address; names and the all-interfaces addresses are not. */
export function isLoopbackAddress(ip: string): boolean {
  const family = net.isIP(ip);
  if (family === 0) return false;
  return LOOPBACK.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The host part of a Host header, lower-cased, without port and trailing
 * dot: `[::1]:9901` -> `[::1]`, `Example.test.:80` -> `example.test`;
 * null when it is not a host at all.
 */
export function hostOf(header: string): string | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]@/\s]+)(?::\d{1,5})?$/.exec(header);
  if (m === null) return null;
  return m[1].toLowerCase().replace(/\.$/, '');
}

/** Names every admin API answers to, whatever --admin-allowed-host adds. */
const ALWAYS_ALLOWED_NAMES: ReadonlySet<string> = new Set(['localhost']);

/**
 * Whether a request with this Host header may be answered: an IPv4
 * literal, an IPv6 literal in brackets, `localhost`, or one of
 * `allowedNames` (lower-case). A request without Host (HTTP/1.0) comes
 * from no browser and is let through; node answers HTTP/1.1 without Host
 * with 400 itself.
 */
export function hostAllowed(header: string | undefined, allowedNames: ReadonlySet<string>): boolean {
  if (header === undefined) return true;
  const host = hostOf(header);
  if (host === null) return false;
  if (host.startsWith('[')) return net.isIPv6(host.slice(1, -1));
  if (net.isIPv4(host)) return true;
  return ALWAYS_ALLOWED_NAMES.has(host) || allowedNames.has(host);
}

/**
 * Whether a browser sent this request from another site. `Origin`, when
 * present, must be this very server (`http://` and the Host header);
 * `Sec-Fetch-Site`, when present, must be `same-origin` or `none` (typed in
 * the address bar, a bookmark). Clients that are not browsers send
 * neither.
 */
export function crossSiteReason(origin: string | undefined, fetchSite: string | undefined, host: string | undefined): string | null {
  if (origin !== undefined && (host === undefined || origin.toLowerCase() !== `http://${host.toLowerCase()}`)) {
    return `Origin ${JSON.stringify(origin)} is not this server`;
  }
  if (fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none') {
    return `Sec-Fetch-Site ${JSON.stringify(fetchSite)}: a browser request from another site`;
  }
  return null;
}

/** Compares an Authorization header with the token in constant time. */
export class BearerToken {
  /** SHA-256 of the token: equal-length buffers for timingSafeEqual, whatever the length of what is presented. */
  readonly #digest: Buffer;

  constructor(token: string) {
    this.#digest = sha256(token);
  }

  /** Whether `header` is `Bearer <the token>` (scheme case-insensitive, as RFC 9110 says). */
  accepts(header: string | undefined): boolean {
    const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
    // Hashed and compared even when absent, so that both paths take the same time.
    const presented = sha256(m === null ? '' : m[1]);
    return crypto.timingSafeEqual(presented, this.#digest) && m !== null;
  }
}

function sha256(text: string): Buffer {
  return crypto.createHash('sha256').update(text).digest();
}
