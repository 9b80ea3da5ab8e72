// The admin API's bearer token, read once at start from a file
// (--admin-token-file), so it never appears on a command line, in `ps` or
// in the environment. The file is held to what ssh asks of a private key:
// a regular file that no one but its owner may read or write.
import fs from 'node:fs';

/** Shortest token accepted: 32 bytes, e.g. `openssl rand -hex 32` gives 64. */
export const MIN_TOKEN_BYTES = 32;
/** Longest file read: a token is a line, not a document. */
const MAX_TOKEN_FILE_BYTES = 4096;

/**
 * The token in `file`, without trailing whitespace (files written with
 * `echo` end with a newline). Throws, naming the file and the reason and
 * never the content, when the file is missing, not a regular file,
 * readable or writable by group or other, empty, too short, or holds
 * characters a header value cannot carry.
 */
export function readAdminTokenFile(file: string): string {
  const where = `admin token file ${file}`;
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put in its place must not stall the start.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw new Error(`${where}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${where}: not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new Error(`${where}: mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} lets group or other read or write it; chmod 600 it`);
    }
    if (st.size > MAX_TOKEN_FILE_BYTES) throw new Error(`${where}: ${st.size} bytes; a token file holds one line of at most ${MAX_TOKEN_FILE_BYTES} bytes`);
    const buf = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const token = buf.subarray(0, n).toString('utf8').replace(/\s+$/, '');
    if (token === '') throw new Error(`${where}: empty`);
    if (!/^[\x21-\x7e]+$/.test(token)) throw new Error(`${where}: the token must be one word of printable ASCII (it travels in an Authorization header)`);
    if (token.length < MIN_TOKEN_BYTES) throw new Error(`${where}: the token has ${token.length} bytes, fewer than ${MIN_TOKEN_BYTES}; make one with: openssl rand -hex 32`);
    return token;
  } finally {
    fs.closeSync(fd);
  }
}
