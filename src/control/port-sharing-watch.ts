// Looks for other processes on our listeners' ports (port-sharing.ts) after
// every configuration change and then every PORT_SHARING_CHECK_MS, and
// logs each one found once, as a warning: with SO_REUSEPORT (worker
// threads) another process of the same user can take a share of the
// traffic, and the only sign of it would otherwise be requests that never
// reach us.
import type { Logger } from 'pino';
import type { IRListener } from '../ir/types.ts';
import { findForeignListeners, type BoundListener } from './port-sharing.ts';

/** How often the listening sockets are looked at between configuration changes. */
export const PORT_SHARING_CHECK_MS = 30_000;

export interface PortSharingWatch {
  /** Looks now, for these listeners, and keeps looking at them. */
  check(listeners: readonly IRListener[]): void;
  stop(): void;
}

export function watchPortSharing(log: Logger, intervalMs = PORT_SHARING_CHECK_MS): PortSharingWatch {
  let bound: BoundListener[] = [];
  let reported = new Set<string>();
  const look = () => {
    let found;
    try {
      found = findForeignListeners(bound);
    } catch (err) {
      log.debug({ err }, 'port sharing: cannot read the listening sockets');
      return;
    }
    const now = new Set<string>();
    for (const f of found) {
      const id = `${f.inode}|${f.listener}`;
      now.add(id);
      if (reported.has(id)) continue;
      log.warn({
        listener: f.listener, socket: f.socket, uid: f.uid, pid: f.pid, command: f.command,
      }, 'another process listens on a port of ours and may take its traffic (SO_REUSEPORT); run gatehouse as a user of its own');
    }
    reported = now;
  };
  const timer = setInterval(look, intervalMs);
  timer.unref();
  return {
    check(listeners) {
      bound = listeners.map((l) => ({ address: l.address, port: l.port }));
      look();
    },
    stop() {
      clearInterval(timer);
    },
  };
}
