// Watches a config directory: fs.watch for speed, plus polling (name, size,
// mtime and inode of each config file) for where fs.watch misses events
// (network and overlay file systems, a directory replaced under the
// watch). Bursts of changes are debounced into one call.
import fs from 'node:fs';
import path from 'node:path';
import { isConfigFile } from './loader.ts';

export interface WatchOptions {
  /** Quiet time after the last event before onChange is called (default 10 ms). */
  debounceMs?: number;
  /** Longest a steady stream of events can hold the call back (default 250 ms). */
  maxDelayMs?: number;
  /** Polling interval (default 500 ms). */
  pollMs?: number;
  /** Use fs.watch (default true); false leaves polling alone (for tests of the fallback). */
  fsWatch?: boolean;
  /** Called with an error thrown by onChange (default: ignored). */
  onError?: (err: unknown) => void;
}

export interface DirectoryWatcher {
  close(): void;
}

/** name, size, mtime and inode of every config file in `dir`; '' if it cannot be read. */
export function directorySignature(dir: string): string {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter(isConfigFile).sort();
  } catch {
    return '';
  }
  const parts: string[] = [];
  for (const name of names) {
    try {
      const st = fs.statSync(path.join(dir, name), { bigint: true });
      parts.push(`${name}\0${st.size}\0${st.mtimeNs}\0${st.ino}`);
    } catch {
      // vanished between readdir and stat: not there
    }
  }
  return parts.join('\n');
}

/**
 * Calls `onChange` (debounced) whenever a config file in `dir` is added,
 * changed, removed or renamed over, within about a second even where
 * fs.watch reports nothing. Does not call it for the initial state. Never
 * throws after it returns; a missing directory is polled until it appears.
 */
export function watchDirectory(dir: string, onChange: () => void, opts: WatchOptions = {}): DirectoryWatcher {
  // Short: an editor's save or a temp-file-and-rename arrives within a few
  // ms, and every ms here is a ms before the change serves traffic.
  const debounceMs = opts.debounceMs ?? 10;
  const maxDelayMs = opts.maxDelayMs ?? 250;
  const pollMs = opts.pollMs ?? 500;
  let closed = false;
  let signature = directorySignature(dir);
  let timer: NodeJS.Timeout | null = null;
  let firstEventAt = 0;
  let watcher: fs.FSWatcher | null = null;

  const fire = () => {
    timer = null;
    firstEventAt = 0;
    if (closed) return;
    try {
      onChange();
    } catch (e) {
      opts.onError?.(e);
    }
    // Taken after the change is handed on, not before: a stat per file is
    // time the change would otherwise wait. A change landing in between is
    // still seen by fs.watch; only a change fs.watch also misses, inside
    // that window, waits for the next one.
    signature = directorySignature(dir);
  };

  const schedule = () => {
    if (closed) return;
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
        if (filename === null || isConfigFile(filename.toString())) schedule();
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
  const poll = setInterval(() => {
    if (closed) return;
    startWatch();
    if (timer) return; // a call is already on its way; it takes a fresh signature
    if (directorySignature(dir) === signature) return;
    // fs.watch missed this change: the watch may be stale (the directory
    // was replaced); arm a fresh one.
    watcher?.close();
    watcher = null;
    startWatch();
    schedule();
  }, pollMs);

  return {
    close() {
      closed = true;
      clearInterval(poll);
      if (timer) clearTimeout(timer);
      timer = null;
      watcher?.close();
      watcher = null;
    },
  };
}
