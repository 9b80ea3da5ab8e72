// The request explain is asked about, written as curl would be:
// `GET https://nova.example/v2.1/servers?x=1 -H "X-Foo: bar"`. Shared by
// the CLI and the admin API, so both read the same thing the same way.

export interface ExplainRequest {
  readonly method: string;
  /** As written. */
  readonly url: string;
  readonly scheme: 'http' | 'https';
  /** host[:port] as the URL gives it; sent as Host. */
  readonly authority: string;
  readonly port: number;
  /** Path as written, before the data plane's normalisation. */
  readonly path: string;
  /** `?a=b` or ''. */
  readonly query: string;
  readonly headers: readonly (readonly [string, string])[];
  /** TLS server name; default: the URL's host (none for an IP literal). */
  readonly sni?: string;
  /** Only sockets bound to this address (or to all interfaces). */
  readonly address?: string;
  /** `namespace/name`: only this Gateway's sockets. */
  readonly gateway?: string;
  /** Only sockets with a Gateway listener of this name. */
  readonly listener?: string;
}

export interface ExplainOptions {
  sni?: string;
  address?: string;
  gateway?: string;
  listener?: string;
}

/** Longest request line explain reads; the admin API bounds its body to a little more. */
export const MAX_REQUEST_TEXT = 8192;
const MAX_HEADERS = 64;
const METHOD = /^[A-Z][A-Z0-9!#$%&'*+.^_`|~-]{0,31}$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$/;

/** The request, or a string saying what is wrong with the text. */
export function parseExplainRequest(text: string, opts: ExplainOptions = {}): ExplainRequest | string {
  if (text.length > MAX_REQUEST_TEXT) return `request text longer than ${MAX_REQUEST_TEXT} characters`;
  const words = shellWords(text);
  if (typeof words === 'string') return words;
  let method = 'GET';
  let url: string | undefined;
  const headers: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '-H' || w === '--header') {
      const h = words[++i];
      if (h === undefined) return `${w} wants "Name: value"`;
      const colon = h.indexOf(':');
      const name = colon === -1 ? '' : h.slice(0, colon).trim();
      if (!HEADER_NAME.test(name)) return `header ${JSON.stringify(h)}: want "Name: value" with a token for a name`;
      if (headers.length >= MAX_HEADERS) return `more than ${MAX_HEADERS} headers`;
      headers.push([name, h.slice(colon + 1).trim()]);
    } else if (w === '-X' || w === '--request') {
      const m = words[++i];
      if (m === undefined || !METHOD.test(m)) return `${w} wants a method such as GET`;
      method = m;
    } else if (url === undefined && METHOD.test(w) && i === 0) {
      method = w;
    } else if (url === undefined && !w.startsWith('-')) {
      url = w;
    } else {
      return `unexpected ${JSON.stringify(w)}: want METHOD URL [-H "Name: value"]...`;
    }
  }
  if (url === undefined) return 'no URL: want METHOD URL [-H "Name: value"]..., e.g. GET https://nova.example/v2.1/servers';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `${JSON.stringify(url)} is not an absolute URL`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `URL scheme ${parsed.protocol} is neither http nor https`;
  const scheme = parsed.protocol === 'https:' ? 'https' : 'http';
  // URL would normalise dot segments away; the data plane's own normalisation must see the path as sent.
  const afterAuthority = url.slice(url.indexOf('//') + 2);
  const slash = afterAuthority.search(/[/?#]/);
  let pathAndQuery = slash === -1 ? '/' : afterAuthority.slice(slash).replace(/#.*$/, '');
  if (pathAndQuery.startsWith('?')) pathAndQuery = `/${pathAndQuery}`;
  const q = pathAndQuery.indexOf('?');
  const hostHeader = headers.find(([n]) => n.toLowerCase() === 'host');
  return {
    method,
    url,
    scheme,
    // An explicit Host header wins over the URL's, as with curl.
    authority: hostHeader?.[1] ?? parsed.host,
    port: parsed.port === '' ? (scheme === 'https' ? 443 : 80) : Number(parsed.port),
    path: q === -1 ? pathAndQuery : pathAndQuery.slice(0, q),
    query: q === -1 ? '' : pathAndQuery.slice(q),
    headers,
    ...(opts.sni !== undefined ? { sni: opts.sni } : {}),
    ...(opts.address !== undefined ? { address: opts.address } : {}),
    ...(opts.gateway !== undefined ? { gateway: opts.gateway } : {}),
    ...(opts.listener !== undefined ? { listener: opts.listener } : {}),
  };
}

/** Words as a POSIX shell splits them: whitespace, '...' and "..." quoting, backslash escapes. */
function shellWords(text: string): string[] | string {
  const out: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1])) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) out.push(word);
      word = null;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote !== null) return `unterminated ${quote} quote`;
  if (word !== null) out.push(word);
  return out;
}
