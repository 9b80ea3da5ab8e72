// Reads one config file, and only if it is what a config file must be: a
// regular file inside the config directory, no larger than the limit.
// A symlink to a FIFO would block the read (and with it the control plane
// and the admin API) until something writes to it; one to /dev/zero would
// never end; one out of the directory could read any file the gateway can.
import fs from 'node:fs';
import path from 'node:path';
import { stampOf } from './listing.ts';
import { describeBytes } from './limits.ts';

export type ReadResult =
  | { kind: 'read'; text: string; stamp: string }
  /** Gone since the listing: not a refusal, the file is simply not there. */
  | { kind: 'gone' }
  /** Changed while it was being read: try again once it is still. */
  | { kind: 'changing' }
  | { kind: 'refused'; reason: string };

/**
 * Reads `name` in `dir` (whose realpath is `realDir`) as UTF-8, at most
 * `maxBytes`. The file type and size are judged on the opened descriptor
 * (fstat), so a swap between a check and the open cannot slip a FIFO or a
 * device past it; the open itself never blocks (O_NONBLOCK) and does not
 * follow a symlink planted after the check (O_NOFOLLOW).
 */
export function readConfigText(dir: string, realDir: string, name: string, maxBytes: number): ReadResult {
  const full = path.join(dir, name);
  let target = full;
  let link: fs.Stats;
  try {
    link = fs.lstatSync(full);
  } catch (e) {
    return errnoResult(e, 'cannot be read');
  }
  if (link.isSymbolicLink()) {
    try {
      target = fs.realpathSync(full);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { kind: 'refused', reason: 'is a symlink whose target does not exist' };
      if (code === 'ELOOP') return { kind: 'refused', reason: 'is a symlink loop' };
      return errnoResult(e, 'is a symlink that cannot be resolved');
    }
    if (!isInside(realDir, target)) return { kind: 'refused', reason: 'is a symlink to a file outside the config directory' };
  }

  let fd: number;
  try {
    fd = fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ELOOP with O_NOFOLLOW: the path became a symlink after the lstat.
    if (code === 'ELOOP') return { kind: 'changing' };
    // ENXIO: a socket (or a device with no driver), which open() refuses.
    if (code === 'ENXIO') return { kind: 'refused', reason: `${link.isSymbolicLink() ? 'is a symlink to' : 'is'} a socket or device, not a regular file` };
    return errnoResult(e, 'cannot be opened');
  }
  try {
    const before = fs.fstatSync(fd, { bigint: true });
    if (!before.isFile()) {
      return { kind: 'refused', reason: `${link.isSymbolicLink() ? 'is a symlink to' : 'is'} ${fileType(before)}, not a regular file` };
    }
    if (before.size > BigInt(maxBytes)) {
      return { kind: 'refused', reason: `is ${before.size} bytes, over the limit of ${describeBytes(maxBytes)} per file` };
    }
    // One byte more than the limit: reading it means the file grew past it.
    const buffer = Buffer.allocUnsafe(Math.min(Number(before.size), maxBytes) + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) break;
      const n = fs.readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    const after = fs.fstatSync(fd, { bigint: true });
    const stamp = stampOf(before);
    if (stampOf(after) !== stamp) {
      if (length > maxBytes) return { kind: 'refused', reason: `grew past the limit of ${describeBytes(maxBytes)} per file while being read` };
      return { kind: 'changing' };
    }
    // Unchanged, yet not the size it claims: a file system that makes its
    // files up as they are read (procfs, some FUSE), never a config file.
    if (length !== Number(before.size)) return { kind: 'refused', reason: 'holds more or less than its size says; not a file on a regular file system' };
    return { kind: 'read', text: buffer.toString('utf8', 0, length), stamp };
  } catch (e) {
    return errnoResult(e, 'cannot be read');
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether `target` (a realpath) is `realDir` itself or below it. */
function isInside(realDir: string, target: string): boolean {
  const rel = path.relative(realDir, target);
  return rel !== '' && !rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel);
}

function fileType(st: fs.BigIntStats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}

function errnoResult(e: unknown, what: string): ReadResult {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') return { kind: 'gone' };
  // The code and syscall only: node's message would repeat the path, which is already the error's file.
  return { kind: 'refused', reason: `${what}: ${err.code ?? err.name}` };
}
