// A listener that translate() accepted can still fail to bind (the port is
// taken by another process). The data plane reports that; this folds it
// back into the status of the Gateway (or ListenerSet) the listener is
// written in, so `kubectl get`-style readers see it.
import type { IR } from '../ir/types.ts';
import type { PlainCondition } from '../translate/conditions.ts';

interface ListenerStatusLike { name: string; conditions: PlainCondition[] }
interface GatewayStatusLike { conditions: PlainCondition[]; listeners: ListenerStatusLike[] }

export function markUnboundListeners(ir: IR, statuses: Map<string, unknown>, errors: Record<string, string>): void {
  for (const sock of ir.listeners) {
    const err = errors[sock.key];
    if (!err) continue;
    for (const gl of sock.gatewayListeners) {
      // `ns/gateway/listener`, or `ns/gateway/Kind/ns/listenerset/listener` (translate/gateway.ts).
      const parts = gl.name.split('/');
      const key = parts.length === 6 ? `${parts[2]}|${parts[3]}|${parts[4]}` : `Gateway|${parts[0]}|${parts[1]}`;
      const listener = parts[parts.length - 1];
      const st = statuses.get(key) as GatewayStatusLike | undefined;
      const ls = st?.listeners.find((l) => l.name === listener);
      if (!st || !ls) continue;
      const message = `cannot listen on ${sock.key}: ${err}`;
      ls.conditions = ls.conditions.map((c) => (c.type === 'Programmed'
        ? { ...c, status: 'False', reason: 'PortUnavailable', message }
        : c));
    }
  }
}
