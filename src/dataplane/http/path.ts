// Request path normalisation, applied before routing and kept for the
// upstream request, so that what is matched is what the backend sees:
// `/public/../admin` must not match a `/public` prefix and then reach
// `/admin` on the backend. As Envoy does by default: percent-encoded
// unreserved characters are decoded (RFC 3986 §6.2.2.2), runs of slashes
// merged, and dot segments removed (§5.2.4). Encoded slashes (%2F) stay
// encoded: they are data, not separators.

/** Most paths need none of this; one scan tells. */
function needsWork(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 /* % */) return true;
    if (c === 0x2f /* / */) {
      const n = path.charCodeAt(i + 1);
      if (n === 0x2f || n === 0x2e /* . */) return true;
    }
  }
  return false;
}

export function normalizePath(path: string): string {
  if (!needsWork(path)) return path;
  const decoded = decodeUnreserved(path);
  const out: string[] = [];
  for (const segment of decoded.split('/').slice(1)) {
    if (segment === '.' ) continue;
    if (segment === '..') { out.pop(); continue; }
    if (segment === '') continue;
    out.push(segment);
  }
  // A trailing slash, `.` or `..` leaves the result ending in a directory.
  const last = decoded.slice(decoded.lastIndexOf('/') + 1);
  const trailing = decoded.endsWith('/') || last === '.' || last === '..';
  const joined = `/${out.join('/')}`;
  return trailing && joined !== '/' ? `${joined}/` : joined;
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
