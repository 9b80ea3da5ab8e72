// Looks for other processes on our listeners' ports (port-sharing.ts) when
// the set of bound addresses changes and then every PORT_SHARING_CHECK_MS,
// and logs each one found once, as a warning: with SO_REUSEPORT (worker
// threads) another process of the same user can take a share of the
// traffic, and the only sign of it would otherwise be requests that never
// reach us.
import type { Logger } from 'pino';
import { findForeignListeners, type BoundListener, type ForeignListener } from './port-sharing.ts';

/** How often the listening sockets are looked at between configuration changes. */
export const PORT_SHARING_CHECK_MS = 30_000;

export interface PortSharingWatch {
  /**
   * Keeps looking at these listeners; looks now when their addresses and
   * ports are not the ones of the last call. A configuration change that
   * leaves them as they were (a route added) gives no new reason to look,
   * and a look reads /proc tables on the thread that applies changes.
   */
  check(listeners: readonly BoundListener[]): void;
  stop(): void;
}

export function watchPortSharing(log: Logger, intervalMs = PORT_SHARING_CHECK_MS,
  find: (listeners: readonly BoundListener[]) => ForeignListener[] = findForeignListeners): PortSharingWatch {
  let bound: BoundListener[] = [];
  let boundKey = '';
  let reported = new Set<string>();
  const look = () => {
    let found;
    try {
      found = find(bound);
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
      const next = listeners.map((l) => ({ address: l.address, port: l.port }));
      const key = next.map((l) => `${l.address}|${l.port}`).sort().join(' ');
      if (key === boundKey) return;
      bound = next;
      boundKey = key;
      look();
    },
    stop() {
      clearInterval(timer);
    },
  };
}
