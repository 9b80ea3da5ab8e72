// Who else listens on our ports. Worker threads bind every listener with
// SO_REUSEPORT, so the kernel spreads connections over them; the same
// option lets any other process of the same effective user (Linux
// checks the UID of the first bind) join the group and take a share of
// the traffic, or bind a more specific address on the same port and take
// all of it. Threads of one process cannot share one listening socket in
// Node, so the option stays on while there are workers (with --workers 0
// the sockets are bound without it, and no other process can join); what
// we can do beyond that is see it. Linux lists
// every listening socket in /proc/net/tcp{,6} with its inode, and our own
// sockets are the ones among our file descriptors: any other socket
// listening on one of our ports, on our address or one overlapping it,
// is reported, with the process that holds it when /proc lets us see it.
//
// In Kubernetes each proxy pod has its own network namespace, where no
// other process can join; on a shared host, run gatehouse as a user of
// its own so that only root can.
import fs from 'node:fs';

export interface BoundListener {
  /** As bound: '0.0.0.0', '::', or a literal address. */
  address: string;
  port: number;
}

export interface ForeignListener {
  /** Our listener it shares a port with, `address:port`. */
  listener: string;
  /** The other socket's local address, `address:port`. */
  socket: string;
  uid: number;
  inode: string;
  /** The process holding it, when visible (same user or root). */
  pid: number | null;
  command: string | null;
}

interface ListeningSocket {
  address: string;
  port: number;
  uid: number;
  inode: string;
}

const LISTEN = '0A';

/** The listening sockets of a /proc/net/tcp or tcp6 table. */
export function parseListeningSockets(table: string): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  const lines = table.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const f = lines[i].trim().split(/\s+/);
    if (f.length < 10 || f[3] !== LISTEN) continue;
    const [hexAddress, hexPort] = f[1].split(':');
    out.push({ address: decodeAddress(hexAddress), port: parseInt(hexPort, 16), uid: Number(f[7]), inode: f[9] });
  }
  return out;
}

/**
 * The kernel prints addresses as 32-bit words in host byte order (little
 * endian on every platform gatehouse runs on): IPv4 as one word, IPv6 as four.
 */
function decodeAddress(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = hex.slice(w, w + 8);
    for (let b = 6; b >= 0; b -= 2) bytes.push(parseInt(word.slice(b, b + 2), 16));
  }
  if (bytes.length === 4) return bytes.join('.');
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes.slice(12).join('.')}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return compressIPv6(groups);
}

function compressIPv6(groups: string[]): string {
  // The longest run of zero groups becomes '::', as inet_ntop writes it.
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLength) { best = i; bestLength = j - i; }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}

const WILDCARDS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '::ffff:0.0.0.0']);

/** Two bound addresses on one port take the same connections, or one takes some of the other's. */
function overlaps(a: string, b: string): boolean {
  return a === b || WILDCARDS.has(a) || WILDCARDS.has(b);
}

/**
 * Which of `wanted` (socket inodes) are among this process's file
 * descriptors. The walk stops once all are found: listeners are opened
 * early, so it ends long before the descriptors of a busy gateway's
 * connections, unless a socket is not ours.
 */
function ownSocketInodes(wanted: ReadonlySet<string>): Set<string> {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    if (inodes.size === wanted.size) break;
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`));
      if (m && wanted.has(m[1])) inodes.add(m[1]);
    } catch {
      // Closed between readdir and readlink.
    }
  }
  return inodes;
}

/** Processes holding `inodes`, as far as /proc shows them. */
function holders(inodes: Set<string>): Map<string, { pid: number; command: string }> {
  const found = new Map<string, { pid: number; command: string }>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // Another user's process, or gone.
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]) && !found.has(m[1])) {
        let command = '';
        try {
          command = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 200);
        } catch {
          // Gone.
        }
        found.set(m[1], { pid: Number(entry), command });
      }
    }
    if (found.size === inodes.size) break;
  }
  return found;
}

/**
 * Sockets of other processes listening on the ports of `listeners`; empty
 * where /proc/net is not there (not Linux). Reads two small tables and our
 * own descriptors; walks other processes only when something was found.
 */
export function findForeignListeners(listeners: readonly BoundListener[]): ForeignListener[] {
  if (listeners.length === 0) return [];
  let sockets: ListeningSocket[];
  try {
    sockets = [
      ...parseListeningSockets(readListeningPrefix('/proc/net/tcp').text),
      ...parseListeningSockets(readListeningPrefix('/proc/net/tcp6').text),
    ];
  } catch {
    return [];
  }
  const ports = new Set(listeners.map((l) => l.port));
  const candidates = sockets.filter((s) => ports.has(s.port));
  if (candidates.length === 0) return [];
  const own = ownSocketInodes(new Set(candidates.map((s) => s.inode)));
  const foreign: { socket: ListeningSocket; listener: BoundListener }[] = [];
  for (const socket of candidates) {
    if (own.has(socket.inode)) continue;
    const listener = listeners.find((l) => l.port === socket.port && overlaps(l.address, socket.address));
    if (listener !== undefined) foreign.push({ socket, listener });
  }
  if (foreign.length === 0) return [];
  const owners = holders(new Set(foreign.map((f) => f.socket.inode)));
  return foreign.map(({ socket, listener }) => {
    const owner = owners.get(socket.inode);
    return {
      listener: `${listener.address}:${listener.port}`,
      socket: `${socket.address}:${socket.port}`,
      uid: socket.uid,
      inode: socket.inode,
      pid: owner?.pid ?? null,
      command: owner?.command ?? null,
    };
  });
}

/**
 * The kernel writes a /proc/net/tcp table listening sockets first (its
 * listening hash, then the established one, which holds every other
 * state), so the listeners are a prefix of the table. Reading stops at the
 * first line of another state: the rest, one line per connection and
 * TIME_WAIT, ran to 13,000 lines (35 ms of system time per look) on a
 * machine after a benchmark, and grows with traffic.
 */
const CHUNK_BYTES = 64 * 1024;
/** Bound on what one table read keeps: ~7,000 listening sockets. */
export const MAX_LISTENING_TABLE_BYTES = 1024 * 1024;

/** The listening-socket prefix of a /proc/net/tcp{,6} table ('' when it is not there), and how many bytes were read. */
export function readListeningPrefix(path: string, maxBytes = MAX_LISTENING_TABLE_BYTES): { text: string; bytesRead: number } {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: '', bytesRead: 0 };
    throw err;
  }
  try {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let text = '';
    let bytesRead = 0;
    let checked = 0; // text before this offset holds only the header and listening lines
    while (bytesRead < maxBytes) {
      const n = fs.readSync(fd, chunk, 0, Math.min(CHUNK_BYTES, maxBytes - bytesRead), null);
      if (n === 0) break;
      bytesRead += n;
      text += chunk.toString('latin1', 0, n);
      for (let end = text.indexOf('\n', checked); end !== -1; end = text.indexOf('\n', checked)) {
        if (checked !== 0 && !isListeningLine(text.slice(checked, end))) return { text: text.slice(0, checked), bytesRead };
        checked = end + 1;
      }
    }
    return { text: text.slice(0, checked), bytesRead };
  } finally {
    fs.closeSync(fd);
  }
}

function isListeningLine(line: string): boolean {
  const f = line.trim().split(/\s+/);
  return f[3] === LISTEN;
}
