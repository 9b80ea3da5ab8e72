// The control loop of both modes: a provider's objects -> translate() ->
// what the mode does with the result (a local data plane and the admin
// API's status in standalone; remote proxies, the API server's status
// subresources and provisioning in Kubernetes mode). One cycle at a time;
// changes that arrive during a cycle are folded into one more cycle after
// it, so a burst of a thousand events costs two translations, not a
// thousand.
import type { Logger } from 'pino';
import type { KubeObject } from '../api/types.ts';
import type { ObjectSource } from '../providers/file/loader.ts';

/**
 * Something wrong with what a provider read, for /api/v1/errors and the
 * log: a file that does not parse, an object that fails validation, a
 * listener whose certificate went bad.
 */
export interface Problem {
  /** The file it came from (standalone); absent for objects from the API server. */
  file?: string;
  document?: number;
  item?: number;
  /** `Kind namespace/name`. */
  object?: string;
  field?: string;
  reason: string;
  /** All of the above in one line. */
  message: string;
  /** 'warning': the object was accepted, and this is what it should know (an older field spelling read, an unknown field dropped). Absent: an error. */
  severity?: 'warning';
}

/** An object as a provider read it, with where it came from when that is a file. */
export interface ReadObject {
  object: KubeObject;
  source?: ObjectSource;
}

export interface ProviderRead {
  /** Valid objects, in the provider's order; unchanged ones as the same instances as last time. */
  objects: ReadObject[];
  problems: Problem[];
}

/** Where objects come from: a directory of files, or the Kubernetes API. */
export interface Provider {
  /** The objects as they are now. */
  read(): ProviderRead | Promise<ProviderRead>;
  /** Calls onChange whenever read() would give something new, until closed. */
  watch(onChange: () => void): { close(): void };
}

export interface ControlLoop {
  /** Runs a cycle now (or after the one running) and resolves when it is done. */
  runNow(): Promise<void>;
  /** Stops watching; a cycle running finishes. */
  stop(): void;
}

/**
 * Runs `cycle` with what `provider` read, once, then watches the provider
 * and runs it again after every change. Resolves when the first cycle is
 * done. A cycle that throws is logged; the previous configuration keeps
 * serving.
 */
export async function startControlLoop(provider: Provider, cycle: (read: ProviderRead) => Promise<void>, log: Logger): Promise<ControlLoop> {
  let running: Promise<void> | null = null;
  let again = false;
  let stopped = false;
  function runNow(): Promise<void> {
    if (running) { again = true; return running; }
    running = (async () => {
      do {
        again = false;
        try {
          await cycle(await provider.read());
        } catch (err) {
          log.error({ err }, 'reload failed; the previous configuration keeps serving');
        }
      } while (again && !stopped);
      running = null;
    })();
    return running;
  }
  await runNow();
  const watcher = provider.watch(() => { if (!stopped) void runNow(); });
  return {
    runNow,
    stop() {
      stopped = true;
      watcher.close();
    },
  };
}
