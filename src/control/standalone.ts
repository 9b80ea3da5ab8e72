// Standalone mode: the file provider feeds translate(), whose status is
// served on the admin API and whose IR drives the in-process data plane.
// One reload at a time; changes that arrive during a reload are folded
// into one more reload after it.
import os from 'node:os';
import type { Logger } from 'pino';
import type { KubeObject } from '../api/types.ts';
import { loadDirectory, type LoadResult } from '../providers/file/loader.ts';
import { GenerationTracker } from '../providers/file/generations.ts';
import { watchDirectory } from '../providers/file/watcher.ts';
import { buildSnapshot } from '../api/build-snapshot.ts';
import { translate } from '../translate/index.ts';
import { parsePool, type AddressPool } from '../translate/addresses.ts';
import { StatusStore } from './status-store.ts';
import { markUnboundListeners } from './bind-status.ts';
import { DataPlane } from '../dataplane/dataplane.ts';
import { startAdminServer } from '../admin/server.ts';
import type { IR } from '../ir/types.ts';
import type { ConfigError } from '../providers/file/loader.ts';

export const CONTROLLER_NAME = 'gatehouse.dev/gateway-controller';

export interface StandaloneOptions {
  configDir: string;
  adminAddress: string;
  addressPool: string | null;
  log: Logger;
}

export interface Standalone {
  close(): Promise<void>;
  /** Resolves after the reload that follows the next change has been applied (for tests). */
  reloadNow(): Promise<void>;
  adminPort: number;
}

export async function startStandalone(opts: StandaloneOptions): Promise<Standalone> {
  const { log } = opts;
  const pool: AddressPool | null = opts.addressPool ? parsePool(opts.addressPool) : null;
  const hostAddress = firstHostAddress();
  const generations = new GenerationTracker();
  const store = new StatusStore();
  const dataPlane = new DataPlane({
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });

  let lastLoad: LoadResult | undefined;
  let errors: ConfigError[] = [];
  let currentIR: IR | null = null;
  let assigned: Record<string, string> = {};
  let ready = false;

  async function reload(): Promise<void> {
    const started = performance.now();
    const loaded = loadDirectory(opts.configDir, lastLoad);
    lastLoad = loaded;
    const objects: KubeObject[] = generations.stamp(loaded.objects.map((o) => o.object));
    for (const e of loaded.errors) if (!errors.some((x) => x.message === e.message)) log.error({ file: e.file }, e.message);
    errors = loaded.errors;

    const snapshot = buildSnapshot(objects);
    const result = translate(snapshot, {
      controllerName: CONTROLLER_NAME,
      addressing: { pool, hostAddress, previous: assigned },
    });
    assigned = result.assignedAddresses;
    const applied = await dataPlane.apply(result.ir);
    markUnboundListeners(result.ir, result.statuses, applied.listenerErrors);
    for (const [key, err] of Object.entries(applied.listenerErrors)) log.error({ listener: key }, `cannot listen on ${key}: ${err}`);
    store.update(objects, result.statuses);
    currentIR = result.ir;
    log.info({ objects: objects.length, listeners: result.ir.listeners.length, errors: errors.length, ms: Math.round(performance.now() - started) }, 'configuration applied');
  }

  // Serialise reloads; coalesce bursts.
  let running: Promise<void> | null = null;
  let again = false;
  function schedule(): Promise<void> {
    if (running) { again = true; return running; }
    running = (async () => {
      do {
        again = false;
        try { await reload(); } catch (e) { log.error({ err: e }, 'reload failed; the previous configuration keeps serving'); }
      } while (again);
      running = null;
    })();
    return running;
  }

  await schedule();
  ready = true;
  const watcher = watchDirectory(opts.configDir, () => { void schedule(); });
  const admin = await startAdminServer({
    address: opts.adminAddress,
    resources: () => store.resources(),
    errors: () => errors,
    config: () => currentIR,
    ready: () => ready,
  });
  log.info({ admin: opts.adminAddress, configDir: opts.configDir, addressPool: opts.addressPool }, 'gatehouse standalone started');

  return {
    adminPort: admin.port,
    reloadNow: () => schedule(),
    async close() {
      watcher.close();
      await admin.close();
      await dataPlane.close();
    },
  };
}

/** The address a Gateway reports when it listens on all interfaces. */
function firstHostAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
