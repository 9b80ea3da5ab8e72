// Watches a config directory: fs.watch for speed, plus polling (name, size,
// mtime and inode of each config file) for where fs.watch misses events
// (network and overlay file systems, a directory replaced under the
// watch). Bursts of changes are debounced into one call. A file the loader
// left settling (rewritten in place, not yet still) is looked at again
// once it can have settled.
import fs from 'node:fs';
import path from 'node:path';
import { fileStamp, isConfigFile, lineStart, readConfigFiles, stampLine, stampOf } from './listing.ts';
import { DEFAULT_MAX_FILES, DEFAULT_SETTLE_MS } from './limits.ts';

export interface WatchOptions {
  /** Quiet time after the last event before onChange is called (default 3 ms). */
  debounceMs?: number;
  /** Longest a steady stream of events can hold the call back (default 250 ms). */
  maxDelayMs?: number;
  /** Polling interval (default 500 ms; longer when a look is slow: nextPollDelay). */
  pollMs?: number;
  /** Use fs.watch (default true); false leaves polling alone (for tests of the fallback). */
  fsWatch?: boolean;
  /** Called with an error thrown by onChange (default: ignored). */
  onError?: (err: unknown) => void;
  /**
   * The directorySignature of what onChange last loaded (LoadResult.signature).
   * Given, polling compares the directory with it, and the watcher takes no
   * signature of its own after each change: a stat per file, ~5 ms per 1,000,
   * the loader has just done.
   */
  loaded?: () => string | undefined;
  /**
   * The loader's maxFiles and settleMs, when they are not the defaults:
   * the watcher lists the directory as the loader does, and looks again at
   * a settling file once settleMs has passed.
   */
  limits?: { maxFiles?: number; settleMs?: number };
}

/**
 * Past settleMs, how much later a settling file is looked at again: file
 * times are coarse (a few ms on Linux), and one look too early costs a
 * reload that changes nothing.
 */
const RECHECK_MARGIN_MS = 10;

export interface DirectoryWatcher {
  close(): void;
}

/**
 * Name and stamp (inode, size, mtime, ctime) of every config file in
 * `dir`, as LoadResult.signature has them; '' if it cannot be read.
 */
export function directorySignature(dir: string, maxFiles = DEFAULT_MAX_FILES): string {
  const listing = readConfigFiles(dir, maxFiles);
  if (listing.error !== undefined) return '';
  const lines: string[] = [];
  for (const name of listing.names) {
    const stamp = fileStamp(path.join(dir, name));
    // null: vanished between readdir and stat, so not there
    if (stamp !== null) lines.push(stampLine(name, stamp));
  }
  return lines.join('\n');
}

/** A signature's lines as name -> stamp, for the last signature asked about. */
let parsed: { signature: string; stamps: Map<string, string> } | null = null;

function stampsOf(signature: string): Map<string, string> {
  if (parsed?.signature === signature) return parsed.stamps;
  const stamps = new Map<string, string>();
  if (signature !== '') {
    for (const line of signature.split('\n')) {
      const nul = line.indexOf('\u0000');
      stamps.set(line.slice(0, nul), line.slice(nul + 1));
    }
  }
  parsed = { signature, stamps };
  return stamps;
}

/** Stats a look has in flight at once: enough to keep the thread pool busy, few enough to leave it to others. */
const LOOK_CONCURRENCY = 8;

/**
 * The config files whose stamp on disk is not the one `expected` (a
 * directorySignature) lists: new, changed, or gone. Empty when the
 * directory is as expected; null when that cannot be told file by file
 * (the directory cannot be read, or it has more than maxFiles config
 * files, where which ones count depends on all the names). The walk and
 * its stats run on libuv's threads: a look at 5,000 files took ~40 ms of
 * the thread that applies changes, and a change arriving during it waited.
 * Each stamp is compared and dropped; only the names are held.
 */
export async function directoryChanges(dir: string, expected: string, maxFiles = DEFAULT_MAX_FILES): Promise<ReadonlySet<string> | null> {
  const stamps = stampsOf(expected);
  const names: string[] = [];
  try {
    const handle = await fs.promises.opendir(dir, { bufferSize: 128 });
    for await (const d of handle) {
      if (d.isDirectory() || !isConfigFile(d.name)) continue;
      names.push(d.name);
      if (names.length > maxFiles) break; // the loop's exit closes the handle
    }
  } catch {
    return expected === '' ? new Set() : null;
  }
  if (names.length > maxFiles) return directorySignature(dir, maxFiles) === expected ? new Set() : null;
  const changed = new Set<string>();
  let listed = 0;
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++];
      let stamp: string | null = null;
      try {
        stamp = stampOf(await fs.promises.stat(path.join(dir, name), { bigint: true }));
      } catch {
        // vanished, or a dangling symlink: not in a signature either
      }
      if (stamp === null) continue;
      listed++;
      if (stamps.get(name) !== stamp) changed.add(name);
    }
  };
  await Promise.all(Array.from({ length: LOOK_CONCURRENCY }, worker));
  if (listed - changed.size !== stamps.size) {
    // Some listed file is gone from the directory.
    const present = new Set(names);
    for (const name of stamps.keys()) if (!present.has(name)) changed.add(name);
  }
  return changed;
}

/** The line of `signature` for `file`, if it lists it. */
export function lineIn(signature: string, file: string): string | undefined {
  const at = lineStart(signature, file);
  if (at === -1) return undefined;
  const end = signature.indexOf('\n', at);
  return signature.slice(at, end === -1 ? undefined : end);
}

/**
 * The config files a change touched, as fs.watch named them, or null when
 * that is not known (the platform did not say, or polling found it).
 */
export type ChangedFiles = ReadonlySet<string> | null;

/**
 * A look stats every config file: ~40 ms at 5,000 files here (now on
 * libuv's threads, see directoryChanges, but still CPU). Looking every
 * `pollMs` whatever that costs took ~8% of a core on an idle gateway. The
 * next look waits at least 50 times as long as the last one took, never
 * less than `pollMs`: with fs.watch working nothing changes; where it
 * misses events, a directory of 5,000 files is seen to change within a
 * few seconds instead of 0.5 s.
 */
export function nextPollDelay(pollMs: number, lastLookMs: number): number {
  return Math.max(pollMs, Math.ceil(50 * lastLookMs));
}

/**
 * Calls `onChange` (debounced) whenever a config file in `dir` is added,
 * changed, removed or renamed over, within about a second even where
 * fs.watch reports nothing (longer in a directory whose look takes more
 * than 10 ms: nextPollDelay). Does not call it for the initial state. Never
 * throws after it returns; a missing directory is polled until it appears.
 */
export function watchDirectory(dir: string, onChange: (changed: ChangedFiles) => void, opts: WatchOptions = {}): DirectoryWatcher {
  // Short: every ms here is a ms before the change serves traffic. The
  // debounce only batches a burst (events less than this apart, up to
  // maxDelayMs); it is not what keeps a half-written file out: a file
  // rewritten in place is kept at its last good version until it settles
  // (the loader's settleMs), and a temp file renamed into place is whole.
  // 1 ms against 3 took ~2 ms off a new route's p50 to first 200 (issue 13).
  const debounceMs = opts.debounceMs ?? 1;
  const maxDelayMs = opts.maxDelayMs ?? 250;
  const pollMs = opts.pollMs ?? 500;
  const maxFiles = opts.limits?.maxFiles ?? DEFAULT_MAX_FILES;
  const recheckMs = (opts.limits?.settleMs ?? DEFAULT_SETTLE_MS) + RECHECK_MARGIN_MS;
  let closed = false;
  let signature = opts.loaded === undefined ? directorySignature(dir, maxFiles) : '';
  let recheckTimer: NodeJS.Timeout | null = null;
  // The files changed since the last recheck; null: unknown, all of them.
  let recheckFiles: Set<string> | null = new Set();
  let timer: NodeJS.Timeout | null = null;
  let firstEventAt = 0;
  let watcher: fs.FSWatcher | null = null;
  let changed: Set<string> | null = new Set();

  const fire = () => {
    timer = null;
    firstEventAt = 0;
    if (closed) return;
    const files = changed;
    changed = new Set();
    try {
      onChange(files);
    } catch (e) {
      opts.onError?.(e);
    }
    // Taken after the change is handed on, not before: a stat per file is
    // time the change would otherwise wait. A change landing in between is
    // still seen by fs.watch; only a change fs.watch also misses, inside
    // that window, waits for the next one.
    if (opts.loaded === undefined) signature = directorySignature(dir, maxFiles);
    else armRecheck(files);
  };

  // The loader leaves a file rewritten in place at its previous content
  // until it has stopped changing, and lists it with that content's stamp:
  // once it can have settled, a file whose stamp on disk is not the one
  // loaded is handed on again. A file the loaded signature does not list
  // (a new file caught mid-write, or one past maxFiles) is left to polling.
  const armRecheck = (files: ChangedFiles) => {
    if (files === null) recheckFiles = null;
    else if (recheckFiles !== null) for (const f of files) recheckFiles.add(f);
    recheckTimer ??= setTimeout(recheck, recheckMs);
  };

  const recheck = () => {
    recheckTimer = null;
    const files = recheckFiles;
    recheckFiles = new Set();
    const loaded = opts.loaded?.();
    if (closed || loaded === undefined) return;
    if (timer) {
      // A call is on its way, and arms a recheck after itself: these files go with it.
      if (files === null) recheckFiles = null;
      else if (recheckFiles !== null) for (const f of files) recheckFiles.add(f);
      return;
    }
    if (files === null) {
      if (directorySignature(dir, maxFiles) !== loaded) schedule(null);
      return;
    }
    for (const file of files) {
      // Found in place rather than splitting the signature (a line per file) for the one or two files that changed.
      const expected = lineIn(loaded, file);
      if (expected === undefined) continue;
      const stamp = fileStamp(path.join(dir, file));
      if (stamp === null || stampLine(file, stamp) !== expected) schedule(file);
    }
  };

  const schedule = (file: string | null) => {
    if (closed) return;
    if (file === null) changed = null;
    else changed?.add(file);
    const now = Date.now();
    if (!firstEventAt) firstEventAt = now;
    if (timer) clearTimeout(timer);
    const wait = Math.max(0, Math.min(debounceMs, firstEventAt + maxDelayMs - now));
    timer = setTimeout(fire, wait);
  };

  const startWatch = () => {
    if (watcher || closed || opts.fsWatch === false) return;
    try {
      watcher = fs.watch(dir, (_event, filename) => {
        // A null filename: the platform did not say which; assume ours.
        if (filename === null) schedule(null);
        else if (isConfigFile(filename.toString())) schedule(filename.toString());
      });
      watcher.on('error', () => {
        // The directory went away (or the watch broke): polling takes over,
        // and re-arms the watch when the directory is back.
        watcher?.close();
        watcher = null;
      });
    } catch {
      watcher = null;
    }
  };

  startWatch();
  let poll: NodeJS.Timeout | null = null;
  const look = async () => {
    poll = null;
    if (closed) return;
    const started = performance.now();
    try {
      startWatch();
      if (timer) return; // a call is already on its way; it takes a fresh signature
      const expected = opts.loaded?.() ?? signature;
      const found = await directoryChanges(dir, expected, maxFiles);
      // A change handed on meanwhile was compared against the wrong signature: the next look sees.
      if (closed || timer || (opts.loaded?.() ?? signature) !== expected) return;
      if (found !== null && found.size === 0) return;
      // fs.watch missed this change: the watch may be stale (the directory
      // was replaced); arm a fresh one. The files found go on as fs.watch
      // would have named them, so the load reads those alone.
      watcher?.close();
      watcher = null;
      startWatch();
      if (found === null) schedule(null);
      else for (const file of found) schedule(file);
    } catch (e) {
      opts.onError?.(e);
    } finally {
      if (!closed) poll = setTimeout(look, nextPollDelay(pollMs, performance.now() - started));
    }
  };
  poll = setTimeout(look, pollMs);

  return {
    close() {
      closed = true;
      if (poll) clearTimeout(poll);
      if (timer) clearTimeout(timer);
      timer = null;
      if (recheckTimer) clearTimeout(recheckTimer);
      recheckTimer = null;
      watcher?.close();
      watcher = null;
    },
  };
}
