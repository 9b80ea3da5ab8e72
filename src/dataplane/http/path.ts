// Request path normalisation, applied before routing and kept for the
// upstream request, so that what is matched is what the backend sees:
// `/public/../admin` must not match a `/public` prefix and then reach
// `/admin` on the backend. As Envoy does with normalize_path and
// merge_slashes: percent-encoded unreserved characters are decoded
// (RFC 3986 §6.2.2.2), runs of slashes merged, and dot segments removed
// (§5.2.4).
//
// Encoded separators. RFC 3986 §2.2 makes %2F data, not a separator, and
// so it stays encoded (Envoy's path_with_escaped_slashes_action
// KEEP_UNCHANGED, which its edge guide recommends for backends that need
// encoded slashes): OpenStack object stores and image services carry %2F
// inside object names. But many backends decode before they split, and
// some treat `\` as `/` too, so a path that `/public` matches here,
// `/public/..%2Fadmin`, would be `/admin` there. Such a path is refused
// (400) when reading %2F and %5C as separators (%2E being a dot already)
// would make a `.` or `..` segment: an encoded separator next to a dot
// segment has no use but to be read two ways (Envoy's REJECT_REQUEST, for
// those paths only); every other %2F is forwarded as it came. A literal backslash is refused
// anywhere in the path: it is not a URI character at all (§2), and
// servers disagree on it.

/** Why a path is not served; the handler answers 400. */
export interface PathRefusal {
  readonly refused: string;
}

/** Most paths need none of this; one scan tells. */
function needsWork(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 /* % */ || c === 0x5c /* \ */) return true;
    if (c === 0x2f /* / */) {
      const n = path.charCodeAt(i + 1);
      if (n === 0x2f || n === 0x2e /* . */) return true;
    }
  }
  return false;
}

/** The path as it is matched and forwarded, or why it is refused. */
export function normalizePath(path: string): string | PathRefusal {
  if (!needsWork(path)) return path;
  if (path.includes('\\')) return { refused: 'a backslash in the path' };
  const decoded = decodeUnreserved(path);
  const segments = decoded.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i];
    if (segment === '.') continue;
    if (segment === '..') { out.pop(); continue; }
    if (segment === '') continue;
    if (hidesDotSegment(segment)) return { refused: 'an encoded separator next to a dot segment in the path' };
    out.push(segment);
  }
  // A trailing slash, `.` or `..` leaves the result ending in a directory.
  const last = segments[segments.length - 1];
  const trailing = last === '' || last === '.' || last === '..';
  const joined = `/${out.join('/')}`;
  return trailing && joined !== '/' ? `${joined}/` : joined;
}

/** Encoded separators as decodeUnreserved leaves them: upper case. */
const ENCODED_SEPARATOR = /%2F|%5C/;

/** Whether `segment`, split at its encoded separators, has a `.` or `..` piece. */
function hidesDotSegment(segment: string): boolean {
  if (!ENCODED_SEPARATOR.test(segment)) return false;
  for (const piece of segment.split(ENCODED_SEPARATOR)) {
    if (piece === '.' || piece === '..') return true;
  }
  return false;
}

const HEX = /%([0-9A-Fa-f]{2})/g;

function decodeUnreserved(path: string): string {
  return path.replace(HEX, (escape, hex: string) => {
    const c = parseInt(hex, 16);
    const unreserved = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
      || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
    return unreserved ? String.fromCharCode(c) : escape.toUpperCase();
  });
}
